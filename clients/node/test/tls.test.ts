// The client's TLS and mTLS options against a totpd that requires client certificates.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { ErrorReason, FactorState, GrpcStatus, TotpdClient, TotpdError } from "../src";
import { type Server, type TlsFiles, startTotpd, writeTlsFiles } from "./harness";

let server: Server;
let tls: TlsFiles;

describe("TotpdClient over mTLS", () => {
  before(async () => {
    tls = writeTlsFiles();
    server = await startTotpd([
      "--tls-cert-file",
      tls.serverCert,
      "--tls-key-file",
      tls.serverKey,
      "--tls-client-ca-file",
      tls.ca,
    ]);
  });
  after(async () => {
    await server?.stop();
    if (tls) rmSync(tls.dir, { recursive: true, force: true });
  });

  it("enrolls and lists with a client certificate", async () => {
    const client = new TotpdClient(server.target, {
      rootCerts: readFileSync(tls.ca),
      clientCert: readFileSync(tls.clientCert),
      clientKey: readFileSync(tls.clientKey),
      timeoutMs: 10_000,
    });
    try {
      const accountId = `node-mtls-${randomUUID()}`;
      const e = await client.enroll(accountId, { label: "Pixel 8" });
      assert.equal(e.factor.state, FactorState.FACTOR_STATE_PENDING);
      const listed = await client.listFactors(accountId);
      assert.deepEqual(
        listed.map((f) => f.factorId),
        [e.factor.factorId],
      );
    } finally {
      client.close();
    }
  });

  it("is refused with UNAVAILABLE without a client certificate", async () => {
    const client = new TotpdClient(server.target, {
      rootCerts: readFileSync(tls.ca),
      maxAttempts: 1,
      timeoutMs: 5_000,
    });
    try {
      await assert.rejects(client.listFactors(`node-mtls-${randomUUID()}`), (err: unknown) => {
        assert.ok(err instanceof TotpdError, String(err));
        assert.equal(err.code, GrpcStatus.UNAVAILABLE);
        assert.equal(err.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
        return true;
      });
    } finally {
      client.close();
    }
  });
});
