// Recovery codes, unlock and resync against a real totpd; codes come from otplib.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { generateSync } from "otplib";
import { type Enrollment, ErrorReason, GrpcStatus, TotpdClient, TotpdError } from "../src";
import { type Server, startTotpd } from "./harness";

let server: Server;
let client: TotpdClient;

const account = (name: string) => `node-${name}-${randomUUID()}`;

/** The SHA1/6/30 code of the enrollment at `atMs`. */
const code = (e: Enrollment, atMs: number): string =>
  generateSync({ secret: e.secretBase32, period: 30, epoch: Math.floor(atMs / 1000) });

async function enrollActive(accountId: string): Promise<Enrollment> {
  const e = await client.enroll(accountId, { label: "Pixel 8" });
  const c = await client.confirm(accountId, e.factor.factorId, code(e, Date.now()));
  assert.equal(c.outcome.result, "VALID");
  return e;
}

/** Asserts that `p` rejects with a TotpdError of this code and reason; returns it. */
async function rejectsWith(
  p: Promise<unknown>,
  code: GrpcStatus,
  reason: ErrorReason,
): Promise<TotpdError> {
  const err = await p.then(
    () => assert.fail("resolved"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TotpdError, String(err));
  assert.deepEqual([err.code, err.reason], [code, reason]);
  return err;
}

describe("MFA lifecycle (live)", () => {
  before(async () => {
    server = await startTotpd();
    client = new TotpdClient(server.target, { insecure: true, timeoutMs: 10_000 });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("generates recovery codes that verify once, then REPLAYED", async () => {
    const ivan = account("ivan");
    await enrollActive(ivan);
    const rc = await client.generateRecoveryCodes(ivan);
    assert.equal(rc.codes.length, 10);
    assert.equal(new Set(rc.codes).size, 10);
    for (const c of rc.codes) assert.ok(/^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$/.test(c));
    assert.deepEqual([rc.status.remaining, rc.status.issued], [10, 10]);
    assert.ok(Math.abs(Date.now() - (rc.status.generatedAt?.getTime() ?? 0)) < 300_000);

    let v = await client.verifyRecoveryCode(ivan, rc.codes[0]);
    assert.deepEqual([v.outcome.result, v.status.remaining, v.status.issued], ["VALID", 9, 10]);
    v = await client.verifyRecoveryCode(ivan, rc.codes[0]);
    assert.deepEqual([v.outcome.result, v.status.remaining], ["REPLAYED", 9]);
    v = await client.verifyRecoveryCode(ivan, rc.codes[1].replaceAll("-", "").toUpperCase());
    assert.deepEqual([v.outcome.result, v.status.remaining], ["VALID", 8]);
    const err = await rejectsWith(
      client.verifyRecoveryCode(ivan, "not-a-code!"),
      GrpcStatus.INVALID_ARGUMENT,
      ErrorReason.ERROR_REASON_MALFORMED_CODE,
    );
    assert.ok(!err.message.includes("not-a-code"), "the code is echoed in the error");

    const list = await client.mfaStatus(ivan);
    assert.deepEqual(
      [list.factors.length, list.recoveryCodes.remaining, list.recoveryCodes.issued],
      [1, 8, 10],
    );
    await client.generateRecoveryCodes(ivan);
    v = await client.verifyRecoveryCode(ivan, rc.codes[2]);
    assert.equal(v.outcome.result, "INVALID", "a code of the replaced set");

    await rejectsWith(
      client.generateRecoveryCodes(account("judy")),
      GrpcStatus.NOT_FOUND,
      ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND,
    );
  });

  it("unlocks an account locked by wrong codes", async () => {
    const kim = account("kim");
    const e = await enrollActive(kim);
    const wrong = code(e, Date.now() - 3_600_000);
    let retryAfter = -1;
    // Backoff starts after the 3rd failure, the lock after the 10th.
    for (let i = 0; i < 12 && retryAfter < 0; i++) {
      const outcome = await client.verify(kim, wrong);
      if (outcome.result === "LOCKED") retryAfter = outcome.retryAfterSeconds;
    }
    // Not "the next right code is LOCKED too": the backoff may end before that call
    // on a slow machine. What the unlock cleared is the server's own account.
    assert.ok(retryAfter > 0, "not locked (in backoff) after wrong codes");
    const next = code(e, Date.now() + 30_000);

    const u = await client.unlock(kim);
    assert.equal(u.factorsCleared, 1);
    assert.ok(u.consecutiveFailuresCleared >= 3, JSON.stringify(u));
    assert.equal((await client.verify(kim, next)).result, "VALID");
    await rejectsWith(
      client.unlock(account("nobody")),
      GrpcStatus.NOT_FOUND,
      ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND,
    );
  });

  it("resyncs a factor whose app runs 5 minutes ahead", async () => {
    const leo = account("leo");
    const e = await enrollActive(leo);
    const factorId = e.factor.factorId;
    const app = Date.now() + 300_000;
    const [code1, code2] = [code(e, app), code(e, app + 30_000)];

    const r = await client.resync(leo, factorId, code1, code2);
    const drift = r.factor.driftSteps;
    assert.equal(r.outcome.result, "VALID");
    assert.ok(drift >= 9 && drift <= 12, `drift ${drift}`);
    assert.equal(r.outcome.stepOffset, drift);
    assert.equal((await client.getFactor(leo, factorId)).driftSteps, drift);
    const later = await client.verify(leo, code(e, app + 60_000));
    assert.equal(later.result, "VALID");
    assert.ok(later.stepOffset >= drift && later.stepOffset <= drift + 2, `${later.stepOffset}`);

    const again = await client.resync(leo, factorId, code1, code2);
    assert.deepEqual([again.outcome.result, again.factor.driftSteps], ["REPLAYED", drift]);
    const server = await client.verify(leo, code(e, Date.now() - 30_000));
    assert.notEqual(server.result, "VALID", "a code of the server's clock, outside the window");
    await rejectsWith(
      client.resync(leo, factorId, "12a456", code2),
      GrpcStatus.INVALID_ARGUMENT,
      ErrorReason.ERROR_REASON_MALFORMED_CODE,
    );
  });
});
