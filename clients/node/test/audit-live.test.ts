// listAuditEvents / auditEvents against a real totpd (the implicit local caller holds admin).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { TotpdClient } from "../src";
import { type Server, startTotpd } from "./harness";

let server: Server;
let client: TotpdClient;

before(async () => {
  server = await startTotpd();
  client = new TotpdClient(server.target, { insecure: true, timeoutMs: 10_000 });
});

after(async () => {
  client?.close();
  await server?.stop();
});

describe("audit events (live)", () => {
  it("lists a real enrollment", async () => {
    const account = `node-live-audit-${randomUUID()}`;
    const e = await client.enroll(account, { label: "phone" });
    const events = [];
    for await (const ev of client.auditEvents({ accountId: account })) events.push(ev);
    assert.deepEqual(
      events.map((ev) => [ev.method, ev.factorId, ev.statusCode, ev.caller]),
      [["Enroll", e.factor.factorId, "OK", "local"]],
    );
  });
});
