// Spreading calls over replicas: round_robin over an ipv4: multi-address target with a
// retry policy in the service config, as the README shows. Two real servers with separate
// databases, so where each enrollment landed is visible.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { TotpdClient } from "../src";
import { type Server, startTotpd } from "./harness";

const serviceConfig = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: [{ service: "totpd.v1.TotpService" }],
      retryPolicy: {
        maxAttempts: 3,
        initialBackoff: "0.1s",
        maxBackoff: "1s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    },
  ],
};

describe("round_robin over replicas", () => {
  const servers: Server[] = [];
  before(async () => {
    servers.push(await startTotpd(), await startTotpd());
  });
  after(async () => {
    for (const s of servers) await s.stop();
  });

  it("spreads enrollments over both servers", async () => {
    const target = `ipv4:${servers.map((s) => s.target).join(",")}`;
    const both = new TotpdClient(target, {
      insecure: true,
      timeoutMs: 10_000,
      channelOptions: { "grpc.service_config": JSON.stringify(serviceConfig) },
    });
    const accounts = Array.from({ length: 6 }, () => `node-rr-${randomUUID()}`);
    try {
      for (const a of accounts) await both.enroll(a, { label: "Pixel 8" });
    } finally {
      both.close();
    }
    // Each replica got some (round_robin picks among the connections ready so far, so
    // the first calls may all go to the first one up), and every one landed once.
    const landed: number[] = [];
    for (const s of servers) {
      const one = new TotpdClient(s.target, { insecure: true, timeoutMs: 10_000 });
      let count = 0;
      for (const a of accounts) count += (await one.listFactors(a, true)).length;
      one.close();
      landed.push(count);
    }
    assert.ok(
      landed.every((n) => n > 0),
      `enrollments per replica: ${landed}`,
    );
    assert.equal(landed[0] + landed[1], 6);
  });
});
