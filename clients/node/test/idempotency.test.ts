// request ids against a real totpd: a retry after a lost response must not act twice.
// The server keeps request ids (AIP-155) only from the release that added them;
// against an older one these tests skip, saying so, instead of failing.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it, type TestContext } from "node:test";
import {
  type ChannelOptions,
  InterceptingCall,
  type Interceptor,
  Metadata,
  status,
} from "@grpc/grpc-js";
import { generateSync } from "otplib";
import { ErrorReason, GrpcStatus, TotpdClient, TotpdError } from "../src";
import type { EnrollRequest, EnrollResponse } from "../src/gen/totpd/v1/totp_service";
import { type Server, startTotpd } from "./harness";

const SERVER_IGNORES_REQUEST_ID =
  "this totpd ignores request_id (it enrolled twice under one id): the server side of AIP-155 idempotency has not landed";

const account = (name: string) => `node-${name}-${randomUUID()}`;

let server: Server;
let client: TotpdClient;
let requestIdsKept = false;

/**
 * Whether the server keeps request ids: one id reused for a different enrollment
 * is refused with REQUEST_ID_REUSED by a server that does, enrolled by one that does not.
 */
async function probe(): Promise<boolean> {
  const who = account("probe");
  const requestId = randomUUID();
  await client.enroll(who, { label: "Pixel 8", requestId });
  try {
    await client.enroll(who, { label: "Work phone", requestId });
    return false;
  } catch (err) {
    assert.ok(err instanceof TotpdError);
    assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
    assert.equal(err.reason, ErrorReason.ERROR_REASON_REQUEST_ID_REUSED);
    assert.equal(err.field, "request_id");
    return true;
  }
}

/** Lets every Enroll reach the server but answers the first with UNAVAILABLE, as a dropped connection would. */
function loseFirstEnrollResponse() {
  const seen = { requestIds: [] as string[], dropped: undefined as EnrollResponse | undefined };
  const interceptor: Interceptor = (options, next) => {
    if (!options.method_definition.path.endsWith("/Enroll"))
      return new InterceptingCall(next(options));
    let drop = false;
    return new InterceptingCall(next(options), {
      sendMessage(message: EnrollRequest, send) {
        seen.requestIds.push(message.requestId);
        send(message);
      },
      start(metadata, listener, start) {
        start(metadata, {
          // grpc-js holds the status until the message is passed on, so the
          // response goes through and the call's status becomes UNAVAILABLE.
          onReceiveMessage(message: EnrollResponse, receive) {
            if (seen.dropped === undefined) {
              seen.dropped = message;
              drop = true;
            }
            receive(message);
          },
          onReceiveStatus(st, receive) {
            receive(
              drop
                ? {
                    code: status.UNAVAILABLE,
                    details: "connection lost after the server answered",
                    metadata: new Metadata(),
                  }
                : st,
            );
          },
        });
      },
    });
  };
  return { seen, interceptor };
}

describe("request ids against a real totpd", () => {
  before(async () => {
    server = await startTotpd();
    client = new TotpdClient(server.target, { insecure: true, timeoutMs: 10_000 });
    requestIdsKept = await probe();
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("returns the first factor when Enroll is retried after a lost response", async (t: TestContext) => {
    const { seen, interceptor } = loseFirstEnrollResponse();
    const c = new TotpdClient(server.target, {
      insecure: true,
      timeoutMs: 10_000,
      initialBackoffMs: 10,
      channelOptions: { interceptors: [interceptor] } as ChannelOptions,
    });
    const alice = account("alice");
    try {
      let enrolled;
      try {
        enrolled = await c.enroll(alice, { label: "Pixel 8" });
      } catch (err) {
        // Without server support the retry enrolls again and collides with the first.
        if (
          requestIdsKept ||
          !(err instanceof TotpdError) ||
          err.reason !== ErrorReason.ERROR_REASON_LABEL_TAKEN
        )
          throw err;
      }
      assert.equal(seen.requestIds.length, 2);
      assert.ok(seen.requestIds[0]);
      assert.equal(
        seen.requestIds[1],
        seen.requestIds[0],
        "the retry must carry the first attempt's request id",
      );
      if (!requestIdsKept) return t.skip(SERVER_IGNORES_REQUEST_ID);
      const first = seen.dropped?.factor?.factorId;
      assert.equal(enrolled?.factor.factorId, first);
      assert.equal(enrolled?.secretBase32, seen.dropped?.secretBase32);
      assert.deepEqual(
        (await c.listFactors(alice, true)).map((f) => f.factorId),
        [first],
      );
    } finally {
      c.close();
    }
  });

  it("enrolls once for one request id", async (t: TestContext) => {
    if (!requestIdsKept) return t.skip(SERVER_IGNORES_REQUEST_ID);
    const bob = account("bob");
    const requestId = randomUUID();
    const first = await client.enroll(bob, { label: "Pixel 8", requestId });
    const again = await client.enroll(bob, { label: "Pixel 8", requestId });
    assert.equal(again.factor.factorId, first.factor.factorId);
    assert.equal(again.secretBase32, first.secretBase32);
    assert.equal((await client.listFactors(bob, true)).length, 1);
  });

  it("answers a repeated confirm with the first verdict instead of REPLAYED", async (t: TestContext) => {
    if (!requestIdsKept) return t.skip(SERVER_IGNORES_REQUEST_ID);
    const carol = account("carol");
    const e = await client.enroll(carol, { label: "Pixel 8" });
    const code = generateSync({ secret: e.secretBase32 });
    const requestId = randomUUID();
    for (let i = 0; i < 2; i++) {
      const c = await client.confirm(carol, e.factor.factorId, code, { requestId });
      assert.equal(c.outcome.result, "VALID", `confirm ${i + 1}`);
    }
  });

  it("answers a repeated disable with the first result", async (t: TestContext) => {
    if (!requestIdsKept) return t.skip(SERVER_IGNORES_REQUEST_ID);
    const dave = account("dave");
    const e = await client.enroll(dave, { label: "Pixel 8" });
    const requestId = randomUUID();
    for (let i = 0; i < 2; i++) {
      const d = await client.disable(dave, { factorId: e.factor.factorId, force: true, requestId });
      assert.equal(d.outcome.result, "VALID", `disable ${i + 1}`);
      assert.deepEqual(
        d.factors.map((f) => f.factorId),
        [e.factor.factorId],
      );
    }
  });
});
