// ListAuditEvents: the filter on the wire, events decoded, the paging generator.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { ErrorReason, TotpdClient } from "../src";
import * as pb from "../src/gen/totpd/v1/factor";
import type * as audit from "../src/gen/totpd/v1/audit";
import { FakeTotpd } from "./fake";

const T0 = 1_764_662_400_123_456; // 2025-12-02 08:00:00.123456 UTC, in µs

function events(n: number): audit.AuditEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    eventId: i + 1,
    timeUnixMicros: T0 + i,
    caller: "payments",
    tenant: "shop",
    method: "Verify",
    accountId: `user-${i}`,
    factorId: "",
    verifyResult: pb.VerifyResult.VERIFY_RESULT_VALID,
    errorReason: ErrorReason.ERROR_REASON_UNSPECIFIED,
    statusCode: "OK",
    stepOffset: 0,
    requestId: "",
    peer: "",
  }));
}

let fake: FakeTotpd | undefined;
let client: TotpdClient | undefined;

async function serve(all: audit.AuditEvent[]): Promise<FakeTotpd> {
  fake = await new FakeTotpd().start();
  fake.auditEvents = all;
  client = new TotpdClient(fake.target, { insecure: true });
  return fake;
}

afterEach(() => {
  client?.close();
  fake?.stop();
  client = fake = undefined;
});

describe("listAuditEvents", () => {
  it("sends the filter and decodes an event", async () => {
    const denied = {
      ...events(1)[0]!,
      eventId: 7,
      tenant: "",
      method: "Enroll",
      verifyResult: pb.VerifyResult.VERIFY_RESULT_UNSPECIFIED,
      errorReason: ErrorReason.ERROR_REASON_PERMISSION_DENIED,
      statusCode: "PERMISSION_DENIED",
    };
    const f = await serve([denied]);
    const page = await client!.listAuditEvents(
      {
        tenant: "shop",
        accountId: "alice",
        caller: "console",
        method: "Enroll",
        since: new Date("2025-12-01T00:00:00Z"),
        until: new Date("2025-12-03T00:00:00Z"),
      },
      { pageSize: 10 },
    );
    const req = f.received[0]!.request as audit.ListAuditEventsRequest;
    assert.deepEqual(
      [req.tenant, req.accountId, req.caller, req.method, req.pageSize],
      ["shop", "alice", "console", "Enroll", 10],
    );
    assert.equal(req.startTimeUnixMicros, 1_764_547_200_000_000);
    assert.equal(req.endTimeUnixMicros, 1_764_720_000_000_000);
    assert.equal(page.nextPageToken, "");
    const [e] = page.events;
    assert.equal(e!.eventId, 7);
    assert.equal(e!.time.toISOString(), "2025-12-02T08:00:00.123Z");
    assert.equal(e!.timeUnixMicros, T0);
    assert.equal(e!.verifyResult, "UNSPECIFIED");
    assert.equal(e!.errorReason, ErrorReason.ERROR_REASON_PERMISSION_DENIED);
    assert.equal(e!.statusCode, "PERMISSION_DENIED");
  });

  it("auditEvents follows the page tokens with the same filter", async () => {
    const f = await serve(events(230));
    const ids: number[] = [];
    for await (const e of client!.auditEvents({ method: "Verify" })) ids.push(e.eventId);
    assert.equal(ids.length, 230);
    assert.equal(ids[229], 230);
    const reqs = f.received.map((r) => r.request as audit.ListAuditEventsRequest);
    assert.deepEqual(
      reqs.map((r) => r.pageToken),
      ["", "100", "200"],
    );
    assert.ok(reqs.every((r) => r.method === "Verify"));
  });

  it("auditEvents stops at the limit without fetching more", async () => {
    const f = await serve(events(250));
    const ids: number[] = [];
    for await (const e of client!.auditEvents({}, 120)) ids.push(e.eventId);
    assert.equal(ids.length, 120);
    assert.deepEqual(
      f.received.map((r) => (r.request as audit.ListAuditEventsRequest).pageSize),
      [100, 20],
    );
  });
});
