// Retries, request ids and RetryInfo against a scripted in-process server.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import {
  ErrorReason,
  GrpcStatus,
  type MutationOptions,
  TotpdClient,
  type TotpdClientOptions,
  TotpdError,
} from "../src";
import * as pb from "../src/gen/totpd/v1/factor";
import { type Fail, FakeTotpd, UNAVAILABLE } from "./fake";

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let fake: FakeTotpd | undefined;
let client: TotpdClient | undefined;

/** A client whose own backoff is 1-2 ms: any longer wait comes from the server's RetryInfo. */
async function serve(
  script: Fail[],
  options: TotpdClientOptions = {},
): Promise<[FakeTotpd, TotpdClient]> {
  fake = await new FakeTotpd(...script).start();
  client = new TotpdClient(fake.target, {
    insecure: true,
    timeoutMs: 10_000,
    initialBackoffMs: 1,
    maxBackoffMs: 2,
    ...options,
  });
  return [fake, client];
}

afterEach(() => {
  client?.close();
  fake?.stop();
  client = fake = undefined;
});

const mutations: [string, (c: TotpdClient, o?: MutationOptions) => Promise<unknown>][] = [
  ["Enroll", (c, o) => c.enroll("alice", { label: "Pixel 8", ...o })],
  ["ConfirmEnrollment", (c, o) => c.confirm("alice", "f-1", "123456", o)],
  ["Disable", (c, o) => c.disable("alice", { factorId: "f-1", force: true, ...o })],
];

describe("request ids", () => {
  for (const [method, call] of mutations) {
    it(`${method}: a generated request id is sent and reused by every retry of the call`, async () => {
      const [f, c] = await serve([UNAVAILABLE, UNAVAILABLE]);
      await call(c);
      await call(c);
      assert.deepEqual(
        f.received.map((r) => r.method),
        [method, method, method, method],
      );
      const ids = f.received.map((r) => r.requestId);
      assert.match(ids[0], UUID4);
      assert.equal(ids[1], ids[0], "the retries of one call must carry its request id");
      assert.equal(ids[2], ids[0]);
      assert.notEqual(ids[3], ids[0], "a new call must get a new request id");
    });

    it(`${method}: a request id given by the caller is sent on every attempt`, async () => {
      const [f, c] = await serve([UNAVAILABLE]);
      await call(c, { requestId: "checkout-42" });
      assert.deepEqual(
        f.received.map((r) => r.requestId),
        ["checkout-42", "checkout-42"],
      );
    });
  }

  it("an empty request id means a generated one", async () => {
    const [f, c] = await serve([]);
    await c.enroll("alice", { requestId: "" });
    assert.match(f.received[0].requestId, UUID4);
  });
});

describe("retries and RetryInfo", () => {
  it("retries OVERLOADED after at least the server's retry delay", async () => {
    const [f, c] = await serve([
      { code: GrpcStatus.RESOURCE_EXHAUSTED, reason: "ERROR_REASON_OVERLOADED", retryAfterMs: 200 },
    ]);
    const outcome = await c.verify("alice", "123456");
    assert.equal(outcome.result, "VALID");
    assert.equal(f.received.length, 2);
    // 1 ms below the delay: Node timers round to whole milliseconds.
    assert.ok(f.received[1].at - f.received[0].at >= 199, "retried before the server's delay");
  });

  it("rejects at once with OVERLOADED when the delay outlasts the deadline", async () => {
    const [f, c] = await serve(
      [
        {
          code: GrpcStatus.RESOURCE_EXHAUSTED,
          reason: "ERROR_REASON_OVERLOADED",
          retryAfterMs: 30_000,
        },
      ],
      { timeoutMs: 2000 },
    );
    await assert.rejects(c.verify("alice", "123456"), (err: unknown) => {
      assert.ok(err instanceof TotpdError);
      assert.equal(err.code, GrpcStatus.RESOURCE_EXHAUSTED);
      assert.equal(err.reason, ErrorReason.ERROR_REASON_OVERLOADED);
      assert.equal(err.retryAfterMs, 30_000);
      return true;
    });
    assert.equal(f.received.length, 1);
  });

  it("does not retry RATE_LIMITED and exposes the server's delay", async () => {
    const [f, c] = await serve([
      {
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        reason: "ERROR_REASON_RATE_LIMITED",
        retryAfterMs: 10,
      },
    ]);
    await assert.rejects(c.verify("alice", "123456"), (err: unknown) => {
      assert.ok(err instanceof TotpdError);
      assert.equal(err.reason, ErrorReason.ERROR_REASON_RATE_LIMITED);
      assert.equal(err.retryAfterMs, 10);
      return true;
    });
    assert.equal(f.received.length, 1);
  });

  it("does not retry RESOURCE_EXHAUSTED without a totpd reason", async () => {
    const [f, c] = await serve([{ code: GrpcStatus.RESOURCE_EXHAUSTED }]);
    await assert.rejects(c.enroll("alice"), (err: unknown) => {
      assert.ok(err instanceof TotpdError);
      assert.equal(err.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
      assert.equal(err.retryAfterMs, undefined);
      return true;
    });
    assert.equal(f.received.length, 1);
  });

  for (const fail of [
    { code: GrpcStatus.DEADLINE_EXCEEDED, reason: "ERROR_REASON_DEADLINE_EXCEEDED" },
    { code: GrpcStatus.INVALID_ARGUMENT, reason: "ERROR_REASON_REQUEST_ID_REUSED" },
  ]) {
    it(`types ${fail.reason} and does not retry it`, async () => {
      const [f, c] = await serve([fail]);
      await assert.rejects(
        c.disable("alice", { factorId: "f-1", code: "123456" }),
        (err: unknown) => {
          assert.ok(err instanceof TotpdError);
          assert.equal(err.code, fail.code);
          assert.equal(err.reasonName, fail.reason);
          return true;
        },
      );
      assert.equal(f.received.length, 1);
    });
  }

  it("retries UNAVAILABLE on verify like before", async () => {
    const [f, c] = await serve([UNAVAILABLE]);
    assert.equal((await c.verify("alice", "123456")).result, "VALID");
    assert.deepEqual(
      f.received.map((r) => r.method),
      ["Verify", "Verify"],
    );
  });

  it("carries unlockRequired into the outcome", async () => {
    const [f, c] = await serve([]);
    f.outcome = {
      ...pb.VerifyOutcome.create(),
      result: pb.VerifyResult.VERIFY_RESULT_LOCKED,
      factorId: "f-1",
      unlockRequired: true,
    };
    const locked = await c.verify("alice", "123456");
    assert.equal(locked.result, "LOCKED");
    assert.equal(locked.unlockRequired, true);
    assert.equal(locked.retryAfterSeconds, 0);
    f.outcome = {
      ...pb.VerifyOutcome.create(),
      result: pb.VerifyResult.VERIFY_RESULT_LOCKED,
      retryAfterSeconds: 60,
    };
    const waiting = await c.verify("alice", "123456");
    assert.equal(waiting.unlockRequired, false);
    assert.equal(waiting.retryAfterSeconds, 60);
  });
});
