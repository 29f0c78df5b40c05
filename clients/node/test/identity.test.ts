// Token and tenant reach the server as call metadata; refused identities are typed errors.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import {
  ErrorReason,
  GrpcStatus,
  PermissionDeniedError,
  TenantRequiredError,
  TotpdClient,
  type TotpdClientOptions,
  TotpdError,
  UnauthenticatedError,
  isLoopback,
} from "../src";
import { type Fail, FakeTotpd, UNAVAILABLE } from "./fake";

const TOKEN = "tok_node_0123456789";

let fake: FakeTotpd | undefined;
let client: TotpdClient | undefined;

async function serve(script: Fail[], options: TotpdClientOptions = {}): Promise<FakeTotpd> {
  fake = await new FakeTotpd(...script).start();
  client = new TotpdClient(fake.target, {
    insecure: true,
    initialBackoffMs: 1,
    maxBackoffMs: 2,
    ...options,
  });
  return fake;
}

afterEach(() => {
  client?.close();
  fake?.stop();
  client = fake = undefined;
});

describe("identity metadata", () => {
  it("sends the token and the tenant on every call and every retry", async () => {
    const f = await serve([UNAVAILABLE], { token: TOKEN, tenant: "shop" });
    await client!.verify("alice", "123456");
    await client!.enroll("alice");
    await client!.listAuditEvents();
    assert.deepEqual(
      f.received.map((r) => r.method),
      ["Verify", "Verify", "Enroll", "ListAuditEvents"],
    );
    for (const r of f.received) {
      assert.equal(r.metadata["authorization"], `Bearer ${TOKEN}`);
      assert.equal(r.metadata["x-totpd-tenant"], "shop");
    }
  });

  it("sends neither without the options", async () => {
    const f = await serve([]);
    await client!.verify("alice", "123456");
    assert.equal(f.received[0]!.metadata["authorization"], undefined);
    assert.equal(f.received[0]!.metadata["x-totpd-tenant"], undefined);
  });
});

describe("refused identities", () => {
  const cases: [Fail, Function, ErrorReason][] = [
    [
      { code: GrpcStatus.UNAUTHENTICATED, reason: "ERROR_REASON_UNAUTHENTICATED" },
      UnauthenticatedError,
      ErrorReason.ERROR_REASON_UNAUTHENTICATED,
    ],
    [
      { code: GrpcStatus.PERMISSION_DENIED, reason: "ERROR_REASON_PERMISSION_DENIED" },
      PermissionDeniedError,
      ErrorReason.ERROR_REASON_PERMISSION_DENIED,
    ],
    [
      { code: GrpcStatus.INVALID_ARGUMENT, reason: "ERROR_REASON_TENANT_REQUIRED" },
      TenantRequiredError,
      ErrorReason.ERROR_REASON_TENANT_REQUIRED,
    ],
    [
      { code: GrpcStatus.UNAUTHENTICATED }, // a proxy's bare status
      UnauthenticatedError,
      ErrorReason.ERROR_REASON_UNSPECIFIED,
    ],
  ];
  for (const [fail, kind, reason] of cases) {
    it(`${GrpcStatus[fail.code]} ${fail.reason ?? ""} is a ${kind.name}, tried once`, async () => {
      const f = await serve([fail, fail, fail], { token: TOKEN, maxAttempts: 4 });
      const err = await client!.verify("alice", "123456").then(
        () => assert.fail("resolved"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof kind);
      assert.ok(err instanceof TotpdError);
      assert.equal((err as TotpdError).reason, reason);
      assert.equal((err as TotpdError).name, kind.name);
      assert.ok(!String((err as Error).message).includes(TOKEN));
      assert.equal(f.received.length, 1);
    });
  }
});

describe("token safety", () => {
  it("refuses a token in plaintext beyond loopback unless allowed", () => {
    assert.throws(
      () => new TotpdClient("totpd.internal:50051", { insecure: true, token: TOKEN }),
      (e: Error) =>
        e.message.includes("refusing to send the token in plaintext") && !e.message.includes(TOKEN),
    );
    const opts: TotpdClientOptions[] = [
      { insecure: true, token: TOKEN, allowTokenOverPlaintext: true },
      { token: TOKEN },
    ];
    for (const o of opts) new TotpdClient("totpd.internal:50051", o).close();
    new TotpdClient("localhost:50051", { insecure: true, token: TOKEN }).close();
  });

  it("refuses a malformed token or tenant without echoing it", () => {
    for (const bad of ["", " padded", "line\nbreak", "naïve"]) {
      for (const key of ["token", "tenant"] as const) {
        assert.throws(
          () => new TotpdClient("127.0.0.1:1", { insecure: true, [key]: bad }),
          (e: Error) => e.message.includes(key) && (bad === "" || !e.message.includes(bad)),
        );
      }
    }
  });

  it("tells loopback targets from the others", () => {
    const cases: [string, boolean][] = [
      ["127.0.0.1:50051", true],
      ["ipv4:127.0.0.1:50051", true],
      ["[::1]:50051", true],
      ["LOCALHOST:1", true],
      ["dns:///localhost:50051", true],
      ["unix:/run/totpd.sock", true],
      ["10.0.0.5:50051", false],
      ["dns:///totpd.internal:50051", false],
      ["[2001:db8::1]:50051", false],
    ];
    for (const [target, want] of cases) assert.equal(isLoopback(target), want, target);
  });
});
