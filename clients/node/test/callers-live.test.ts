// Against a real totpd with a callers file: allowed calls, and denied ones as typed errors.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ErrorReason,
  PermissionDeniedError,
  TenantRequiredError,
  TotpdClient,
  type TotpdClientOptions,
  TotpdError,
  UnauthenticatedError,
} from "../src";
import { type Server, startTotpd } from "./harness";

const WRITER = "totpd_node-live-writer-0123456789abcdef";
const READER = "totpd_node-live-reader-0123456789abcdef";
const TWO_TENANTS = "totpd_node-live-two-tenants-0123456789";

function entry(name: string, token: string, tenants: string[], permissions: string[]): string {
  const digest = createHash("sha256").update(token).digest("hex");
  return [
    "[[callers]]",
    `name = ${JSON.stringify(name)}`,
    `token_sha256 = "${digest}"`,
    `tenants = ${JSON.stringify(tenants)}`,
    `permissions = ${JSON.stringify(permissions)}`,
    "",
  ].join("\n");
}

let server: Server;
let dir: string;
const clients: TotpdClient[] = [];

function client(options: TotpdClientOptions): TotpdClient {
  const c = new TotpdClient(server.target, { insecure: true, timeoutMs: 10_000, ...options });
  clients.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<TotpdError> {
  const err = await p.then(
    () => assert.fail("resolved"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TotpdError);
  return err;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "totpd-node-callers-"));
  const file = join(dir, "callers.toml");
  writeFileSync(
    file,
    entry("writer", WRITER, ["default"], ["enroll", "verify", "read"]) +
      entry("reader", READER, ["default"], ["read"]) +
      entry("two-tenants", TWO_TENANTS, ["default", "other"], ["read"]),
  );
  server = await startTotpd(["--callers-file", file]);
});

after(async () => {
  for (const c of clients) c.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("callers (live)", () => {
  it("lets an allowed caller enroll and read", async () => {
    const writer = client({ token: WRITER });
    const e = await writer.enroll("node-live-callers", { label: "phone" });
    assert.equal((await writer.getFactor("node-live-callers", e.factor.factorId)).label, "phone");
    const two = client({ token: TWO_TENANTS, tenant: "default" });
    assert.equal((await two.listFactors("node-live-callers", true)).length, 1);
  });

  it("denies Enroll to a read-only caller", async () => {
    const err = await rejection(
      client({ token: READER, maxAttempts: 3 }).enroll("node-live-callers-2"),
    );
    assert.ok(err instanceof PermissionDeniedError);
    assert.equal(err.reason, ErrorReason.ERROR_REASON_PERMISSION_DENIED);
    assert.ok(!err.message.includes(READER));
  });

  it("denies Unlock, an operator's action, to a caller with enroll and verify", async () => {
    const err = await rejection(client({ token: WRITER }).unlock("node-live-callers"));
    assert.ok(err instanceof PermissionDeniedError);
  });

  it("answers an unknown or missing token UNAUTHENTICATED", async () => {
    for (const options of [{ token: "totpd_not-a-known-token-0000000000" }, {}]) {
      const err = await rejection(client(options).listFactors("node-live-callers"));
      assert.ok(err instanceof UnauthenticatedError);
      assert.equal(err.reason, ErrorReason.ERROR_REASON_UNAUTHENTICATED);
    }
  });

  it("makes a caller of two tenants name one, and only one it holds", async () => {
    const err = await rejection(client({ token: TWO_TENANTS }).listFactors("node-live-callers"));
    assert.ok(err instanceof TenantRequiredError);
    const other = await rejection(
      client({ token: READER, tenant: "other" }).listFactors("node-live-callers"),
    );
    assert.ok(other instanceof PermissionDeniedError);
  });
});
