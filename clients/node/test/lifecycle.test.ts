// The lifecycle calls against a scripted in-process server: what they send,
// how they map the answers, and which failures they retry.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { inspect } from "node:util";
import { ErrorReason, GrpcStatus, PermissionDeniedError, TotpdClient, TotpdError } from "../src";
import * as pb from "../src/gen/totpd/v1/factor";
import { type Fail, FakeTotpd, UNAVAILABLE } from "./fake";

let fake: FakeTotpd | undefined;
let client: TotpdClient | undefined;

async function serve(script: Fail[]): Promise<[FakeTotpd, TotpdClient]> {
  fake = await new FakeTotpd(...script).start();
  client = new TotpdClient(fake.target, {
    insecure: true,
    timeoutMs: 10_000,
    initialBackoffMs: 1,
    maxBackoffMs: 2,
  });
  return [fake, client];
}

afterEach(() => {
  client?.close();
  fake?.stop();
  client = fake = undefined;
});

/** The four lifecycle RPCs; only Unlock is idempotent, the others act on every attempt. */
const calls: [string, boolean, (c: TotpdClient) => Promise<unknown>][] = [
  ["GenerateRecoveryCodes", false, (c) => c.generateRecoveryCodes("alice")],
  ["VerifyRecoveryCode", false, (c) => c.verifyRecoveryCode("alice", "k7q2-9xmf-w4c8")],
  ["Unlock", true, (c) => c.unlock("alice")],
  ["Resync", false, (c) => c.resync("alice", "f-1", "123456", "654321")],
];

const generatedAt = new Date(1_700_000_000_000);

describe("lifecycle calls", () => {
  it("send their fields and map the answers", async () => {
    const [f, c] = await serve([]);
    f.outcome = {
      ...pb.VerifyOutcome.create(),
      result: pb.VerifyResult.VERIFY_RESULT_VALID,
      stepOffset: 10,
      attemptsLeft: 10,
    };
    const rc = await c.generateRecoveryCodes("alice");
    assert.deepEqual(rc, {
      codes: ["k7q2-9xmf-w4c8", "0abc-defg-hjkm"],
      status: { remaining: 2, issued: 2, generatedAt },
    });
    assert.ok(!inspect(rc).includes("k7q2"), "console.log would show the codes");
    assert.ok(JSON.stringify(rc).includes("k7q2"), "JSON keeps the codes");
    const v = await c.verifyRecoveryCode("alice", "K7Q2 9XMF W4C8");
    assert.equal(v.outcome.result, "VALID");
    assert.equal(v.outcome.attemptsLeft, 10);
    assert.deepEqual(v.status, { remaining: 9, issued: 10, generatedAt });
    assert.deepEqual(await c.unlock("alice", "f-2"), {
      lockLifted: true,
      consecutiveFailuresCleared: 12,
      factorsCleared: 2,
      budgetRefilled: true,
    });
    const r = await c.resync("alice", "f-1", "123456", "654321");
    assert.deepEqual(
      [r.outcome.result, r.outcome.stepOffset, r.factor.driftSteps, r.factor.factorId],
      ["VALID", 10, 10, "f-1"],
    );
    const list = await c.mfaStatus("alice", true);
    assert.deepEqual(
      [list.factors.length, list.factors[0].driftSteps, list.recoveryCodes],
      [1, -3, { remaining: 9, issued: 10, generatedAt }],
    );
    const plain = await c.listFactors("alice"); // the existing method is unchanged
    assert.deepEqual([plain.length, plain[0].driftSteps], [1, -3]);

    assert.deepEqual(
      f.received.map((x) => [x.method, x.request]),
      [
        ["GenerateRecoveryCodes", { accountId: "alice" }],
        ["VerifyRecoveryCode", { accountId: "alice", code: "K7Q2 9XMF W4C8" }],
        ["Unlock", { accountId: "alice", factorId: "f-2" }],
        ["Resync", { accountId: "alice", factorId: "f-1", code1: "123456", code2: "654321" }],
        ["ListFactors", { accountId: "alice", includeInactive: true }],
        ["ListFactors", { accountId: "alice", includeInactive: false }],
      ],
    );
  });

  // UNAVAILABLE, bare or STORE_UNAVAILABLE, may follow a commit whose response was lost.
  for (const [method, idempotent, call] of calls) {
    it(`${method}: UNAVAILABLE is ${idempotent ? "" : "not "}retried`, async () => {
      for (const f of [{ code: GrpcStatus.UNAVAILABLE }, UNAVAILABLE]) {
        const [fk, c] = await serve([f, f]);
        if (idempotent) {
          await call(c);
          assert.equal(fk.received.length, 3);
        } else {
          await assert.rejects(call(c), (err: unknown) => {
            assert.ok(err instanceof TotpdError);
            assert.equal(err.code, GrpcStatus.UNAVAILABLE);
            return true;
          });
          assert.equal(fk.received.length, 1);
        }
        c.close();
        fk.stop();
      }
    });

    it(`${method}: OVERLOADED (refused before any work) is retried`, async () => {
      const overloaded: Fail = {
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        reason: "ERROR_REASON_OVERLOADED",
      };
      const [f, c] = await serve([overloaded, overloaded]);
      await call(c);
      assert.deepEqual(
        f.received.map((x) => x.method),
        [method, method, method],
      );
    });

    it(`${method}: errors are typed and not retried`, async () => {
      for (const [code, reason] of [
        [GrpcStatus.NOT_FOUND, ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND],
        [GrpcStatus.INVALID_ARGUMENT, ErrorReason.ERROR_REASON_MALFORMED_CODE],
        [GrpcStatus.RESOURCE_EXHAUSTED, ErrorReason.ERROR_REASON_RATE_LIMITED],
      ] as const) {
        const [f, c] = await serve([{ code, reason: ErrorReason[reason] }]);
        await assert.rejects(call(c), (err: unknown) => {
          assert.ok(err instanceof TotpdError);
          assert.deepEqual([err.code, err.reason], [code, reason]);
          return true;
        });
        assert.equal(f.received.length, 1);
        c.close();
        f.stop();
      }
    });
  }

  it("unlock without the admin permission rejects with PermissionDeniedError", async () => {
    const [, c] = await serve([
      { code: GrpcStatus.PERMISSION_DENIED, reason: "ERROR_REASON_PERMISSION_DENIED" },
    ]);
    await assert.rejects(c.unlock("alice"), PermissionDeniedError);
  });
});
