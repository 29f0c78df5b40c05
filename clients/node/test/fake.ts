// An in-process TotpService that answers from a script and records what it
// received: for what a real totpd cannot be made to do on demand (fail an
// attempt with UNAVAILABLE or OVERLOADED, attach a google.rpc.RetryInfo).
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import * as pb from "../src/gen/totpd/v1/factor";
import * as svc from "../src/gen/totpd/v1/totp_service";
import type * as audit from "../src/gen/totpd/v1/audit";
import type * as lc from "../src/gen/totpd/v1/lifecycle";

/** The recovery codes status the fake's lifecycle answers carry (except generate's). */
export const RECOVERY_STATUS: lc.RecoveryCodesStatus = {
  remaining: 9,
  issued: 10,
  generatedAtUnix: 1_700_000_000,
};

/** One scripted failure: a status with a totpd ErrorInfo (if reason) and a RetryInfo (if retryAfterMs). */
export interface Fail {
  code: status;
  reason?: string;
  retryAfterMs?: number;
}

export const UNAVAILABLE: Fail = {
  code: status.UNAVAILABLE,
  reason: "ERROR_REASON_STORE_UNAVAILABLE",
};

/** A serialized google.rpc.Status as totpd sends it in grpc-status-details-bin. */
export function statusDetails(f: Fail, message: string): Buffer {
  const st = new BinaryWriter().uint32(8).int32(f.code).uint32(18).string(message);
  if (f.reason) {
    const info = new BinaryWriter().uint32(10).string(f.reason).uint32(18).string("totpd.v1");
    const any = new BinaryWriter()
      .uint32(10)
      .string("type.googleapis.com/google.rpc.ErrorInfo")
      .uint32(18)
      .bytes(info.finish());
    st.uint32(26).bytes(any.finish());
  }
  if (f.retryAfterMs !== undefined) {
    const seconds = Math.floor(f.retryAfterMs / 1000);
    const nanos = Math.round((f.retryAfterMs - seconds * 1000) * 1e6);
    const duration = new BinaryWriter().uint32(8).int64(seconds).uint32(16).int32(nanos);
    const retry = new BinaryWriter().uint32(10).bytes(duration.finish());
    const any = new BinaryWriter()
      .uint32(10)
      .string("type.googleapis.com/google.rpc.RetryInfo")
      .uint32(18)
      .bytes(retry.finish());
    st.uint32(26).bytes(any.finish());
  }
  return Buffer.from(st.finish());
}

export interface Received {
  method: string;
  requestId: string;
  at: number; // performance.now() on arrival
  metadata: Record<string, string>; // the call's string metadata
  request: unknown;
}

export class FakeTotpd {
  script: Fail[] = [];
  outcome: pb.VerifyOutcome = {
    ...pb.VerifyOutcome.create(),
    result: pb.VerifyResult.VERIFY_RESULT_VALID,
  };
  readonly received: Received[] = [];
  auditEvents: audit.AuditEvent[] = [];
  private readonly server = new Server();
  target = "";

  constructor(...script: Fail[]) {
    this.script = script;
    const unary =
      <Req, Resp>(method: string, requestId: (r: Req) => string, reply: (r: Req) => Resp) =>
      (call: ServerUnaryCall<Req, Resp>, callback: sendUnaryData<Resp>) => {
        const received: Record<string, string> = {};
        for (const [k, v] of Object.entries(call.metadata.getMap())) {
          if (typeof v === "string") received[k] = v;
        }
        this.received.push({
          method,
          requestId: requestId(call.request),
          at: performance.now(),
          metadata: received,
          request: call.request,
        });
        const fail = this.script.shift();
        if (!fail) return callback(null, reply(call.request));
        const message = `scripted ${status[fail.code]}`;
        const metadata = new Metadata();
        metadata.set("grpc-status-details-bin", statusDetails(fail, message));
        callback({ code: fail.code, details: message, metadata } as ServerErrorResponse);
      };
    const factor = (accountId: string, factorId = "f-1") => ({
      ...pb.Factor.create(),
      accountId,
      factorId,
    });
    this.server.addService(svc.TotpServiceService, {
      enroll: unary<svc.EnrollRequest, svc.EnrollResponse>(
        "Enroll",
        (r) => r.requestId,
        (r) => ({
          ...svc.EnrollResponse.create(),
          factor: factor(r.accountId),
        }),
      ),
      confirmEnrollment: unary<svc.ConfirmEnrollmentRequest, svc.ConfirmEnrollmentResponse>(
        "ConfirmEnrollment",
        (r) => r.requestId,
        (r) => ({ outcome: this.outcome, factor: factor(r.accountId, r.factorId) }),
      ),
      verify: unary<svc.VerifyRequest, svc.VerifyResponse>(
        "Verify",
        () => "",
        () => ({ outcome: this.outcome }),
      ),
      disable: unary<svc.DisableRequest, svc.DisableResponse>(
        "Disable",
        (r) => r.requestId,
        () => ({
          outcome: this.outcome,
          factors: [],
        }),
      ),
      // The lifecycle RPCs answer fixed values around the scripted outcome.
      generateRecoveryCodes: unary<
        lc.GenerateRecoveryCodesRequest,
        lc.GenerateRecoveryCodesResponse
      >(
        "GenerateRecoveryCodes",
        () => "",
        () => ({
          codes: ["k7q2-9xmf-w4c8", "0abc-defg-hjkm"],
          status: { remaining: 2, issued: 2, generatedAtUnix: 1_700_000_000 },
        }),
      ),
      verifyRecoveryCode: unary<lc.VerifyRecoveryCodeRequest, lc.VerifyRecoveryCodeResponse>(
        "VerifyRecoveryCode",
        () => "",
        () => ({ outcome: this.outcome, status: RECOVERY_STATUS }),
      ),
      unlock: unary<lc.UnlockRequest, lc.UnlockResponse>(
        "Unlock",
        () => "",
        () => ({
          lockLifted: true,
          consecutiveFailuresCleared: 12,
          factorsCleared: 2,
          budgetRefilled: true,
        }),
      ),
      resync: unary<lc.ResyncRequest, lc.ResyncResponse>(
        "Resync",
        () => "",
        (r) => ({
          outcome: this.outcome,
          factor: { ...factor(r.accountId, r.factorId), driftSteps: 10 },
        }),
      ),
      listFactors: unary<svc.ListFactorsRequest, svc.ListFactorsResponse>(
        "ListFactors",
        () => "",
        (r) => ({
          factors: [{ ...factor(r.accountId), driftSteps: -3 }],
          recoveryCodes: RECOVERY_STATUS,
        }),
      ),
      // Pages auditEvents as the server does: offset tokens, 100 per page by default.
      listAuditEvents: unary<audit.ListAuditEventsRequest, audit.ListAuditEventsResponse>(
        "ListAuditEvents",
        () => "",
        (r) => {
          const start = Number(r.pageToken || 0);
          const end = start + (r.pageSize || 100);
          const more = end < this.auditEvents.length;
          return {
            events: this.auditEvents.slice(start, end),
            nextPageToken: more ? String(end) : "",
          };
        },
      ),
    });
  }

  async start(): Promise<this> {
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.target = `127.0.0.1:${port}`;
    return this;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}
