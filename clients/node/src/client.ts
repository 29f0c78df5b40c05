import {
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
  status as Status,
} from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ErrorReason } from "./gen/totpd/v1/errors.js";
import { Algorithm } from "./gen/totpd/v1/factor.js";
import * as svc from "./gen/totpd/v1/totp_service.js";
import type * as audit from "./gen/totpd/v1/audit.js";
import type * as lc from "./gen/totpd/v1/lifecycle.js";
import {
  type AuditEvent,
  type AuditFilter,
  type AuditPage,
  auditEventFromProto,
  micros,
} from "./audit.js";
import {
  type MfaStatus,
  type RecoveryCodeVerdict,
  type RecoveryCodes,
  type ResyncResult,
  type UnlockResult,
  recoveryCodesFromProto,
  recoveryStatusFromProto,
  recoveryVerdictFromProto,
  resyncFromProto,
  refusedBeforeWork,
  unlockFromProto,
} from "./lifecycle.js";
import { TENANT_HEADER, checkHeaderValue, isLoopback } from "./auth.js";
import { TotpdError } from "./errors.js";
import {
  type BatchItem,
  type BatchResult,
  type Confirmation,
  type DisableOptions,
  type DisableResult,
  type EnrollOptions,
  type Enrollment,
  type Factor,
  type MutationOptions,
  type VerifyOutcome,
  factorFromProto,
  outcomeFromProto,
} from "./types.js";

export const DEFAULT_TIMEOUT_MS = 5000;

export interface TotpdClientOptions {
  /** Deadline of every call in milliseconds, retries included (default 5000). */
  timeoutMs?: number;
  /** Attempts per call on UNAVAILABLE or OVERLOADED (default 4; 1 disables retries). */
  maxAttempts?: number;
  /**
   * First and largest wait between retries (default 100 ms and 2000 ms); a
   * longer google.rpc.RetryInfo delay from the server wins.
   */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Plaintext: only for loopback or a trusted network. Default is TLS with the system roots. */
  insecure?: boolean;
  /** PEM CA certificates to trust instead of the system roots. */
  rootCerts?: Buffer;
  /** Mutual TLS: PEM client certificate chain and private key. */
  clientCert?: Buffer;
  clientKey?: Buffer;
  /** Overrides the TLS server name (e.g. when dialing an IP address). */
  serverName?: string;
  /** Ready-made credentials; the TLS options above are then ignored. */
  credentials?: ChannelCredentials;
  /** grpc-js channel options (keepalive, message sizes...). */
  channelOptions?: ChannelOptions;
  /**
   * Sent as `authorization: Bearer <token>` on every call: the caller's
   * identity (or present a client certificate). Refused with `insecure` to a
   * target beyond loopback unless `allowTokenOverPlaintext`; with your own
   * `credentials` it is sent as given.
   */
  token?: string;
  /** Sent as `x-totpd-tenant`; only a caller holding several tenants needs it. */
  tenant?: string;
  /** Allows `token` over plaintext beyond loopback: TLS ends at a proxy you trust. */
  allowTokenOverPlaintext?: boolean;
}

type Unary<Req, Resp> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, resp: Resp) => void,
) => unknown;

/**
 * Promise-based client for totpd's TotpService.
 *
 * Calls failing with UNAVAILABLE (server unreachable, or its database down: no
 * verdict was reached) or RESOURCE_EXHAUSTED/OVERLOADED (refused before any
 * work) are retried with jittered exponential backoff, waiting at least the
 * server's google.rpc.RetryInfo delay and never past the deadline; nothing else
 * is, RATE_LIMITED least of all (it means "stop guessing"). Errors reject with
 * TotpdError; a wrong or reused code resolves to a VerifyOutcome.
 *
 * enroll, confirm and disable send a request id (`requestId`, or a random UUID
 * made once per call and reused by each of its retries), so a retry after a
 * lost response gets the first attempt's result instead of acting twice.
 * verify and batchVerify are not idempotent: a verification retried after a
 * lost response may resolve to REPLAYED, which is the safe answer (ask for the
 * next code). generateRecoveryCodes, verifyRecoveryCode and resync act on every
 * attempt without a request id: they are retried only on OVERLOADED.
 */
export class TotpdClient {
  private readonly stub: svc.TotpServiceClient;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly identity: [string, string][] = [];

  constructor(target: string, options: TotpdClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxAttempts = options.maxAttempts ?? 4;
    this.initialBackoffMs = options.initialBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 2000;
    if (!(this.timeoutMs > 0)) throw new RangeError("timeoutMs must be positive");
    if (!(this.maxAttempts >= 1)) throw new RangeError("maxAttempts must be at least 1");
    if ((options.clientCert === undefined) !== (options.clientKey === undefined)) {
      throw new TypeError("mTLS needs both clientCert and clientKey");
    }
    if (options.token !== undefined) {
      checkHeaderValue(options.token, "token");
      if (
        options.insecure &&
        !options.credentials &&
        !options.allowTokenOverPlaintext &&
        !isLoopback(target)
      ) {
        throw new TypeError(
          `refusing to send the token in plaintext to ${target}: use TLS, or allowTokenOverPlaintext if TLS ends at a proxy on the way`,
        );
      }
      this.identity.push(["authorization", `Bearer ${options.token}`]);
    }
    if (options.tenant !== undefined) {
      this.identity.push([TENANT_HEADER, checkHeaderValue(options.tenant, "tenant")]);
    }
    let creds = options.credentials;
    if (!creds) {
      if (options.insecure) {
        if (options.rootCerts || options.clientCert)
          throw new TypeError("insecure excludes the TLS options");
        creds = grpcCredentials.createInsecure();
      } else {
        creds = grpcCredentials.createSsl(
          options.rootCerts ?? null,
          options.clientKey ?? null,
          options.clientCert ?? null,
        );
      }
    }
    const channelOptions: ChannelOptions = { ...options.channelOptions };
    if (options.serverName) channelOptions["grpc.ssl_target_name_override"] = options.serverName;
    this.stub = new svc.TotpServiceClient(target, creds, channelOptions);
  }

  /** A fresh Metadata per attempt (grpc-js may modify what it sends). */
  private metadata(): Metadata {
    const md = new Metadata();
    for (const [k, v] of this.identity) md.set(k, v);
    return md;
  }

  /** Closes the channel. */
  close(): void {
    this.stub.close();
  }

  /** Creates a PENDING factor; the result is the only copy of its secret. Idempotent per `requestId`. */
  async enroll(accountId: string, options: EnrollOptions = {}): Promise<Enrollment> {
    const r = await this.call<svc.EnrollRequest, svc.EnrollResponse>(this.stub.enroll, {
      accountId,
      label: options.label ?? "",
      issuer: options.issuer ?? "",
      algorithm: options.algorithm ?? Algorithm.ALGORITHM_UNSPECIFIED,
      digits: options.digits ?? 0,
      periodSeconds: options.periodSeconds ?? 0,
      requestId: requestIdOf(options),
    });
    return {
      factor: factorFromProto(r.factor),
      otpauthUri: r.otpauthUri,
      secretBase32: r.secretBase32,
      qrPng: r.qrPng,
      qrSvg: r.qrSvg,
    };
  }

  /** Activates a PENDING factor with the first code its app shows. Idempotent per `requestId`. */
  async confirm(
    accountId: string,
    factorId: string,
    code: string,
    options: MutationOptions = {},
  ): Promise<Confirmation> {
    const r = await this.call<svc.ConfirmEnrollmentRequest, svc.ConfirmEnrollmentResponse>(
      this.stub.confirmEnrollment,
      { accountId, factorId, code, requestId: requestIdOf(options) },
    );
    return { outcome: outcomeFromProto(r.outcome), factor: factorFromProto(r.factor) };
  }

  /**
   * Checks a sign-in code against the account's ACTIVE factors (or one of them).
   * Not idempotent: after a retried UNAVAILABLE the answer may be REPLAYED.
   */
  async verify(accountId: string, code: string, factorId = ""): Promise<VerifyOutcome> {
    const r = await this.call<svc.VerifyRequest, svc.VerifyResponse>(this.stub.verify, {
      accountId,
      code,
      factorId,
    });
    return outcomeFromProto(r.outcome);
  }

  /** Checks many codes at once; results in request order, each with its own error. */
  async batchVerify(items: readonly BatchItem[]): Promise<BatchResult[]> {
    const r = await this.call<svc.BatchVerifyRequest, svc.BatchVerifyResponse>(
      this.stub.batchVerify,
      {
        items: items.map((i) => ({
          accountId: i.accountId,
          code: i.code,
          factorId: i.factorId ?? "",
        })),
      },
    );
    return r.results.map((res): BatchResult => {
      if (res.error) {
        const e = res.error;
        const reason =
          ErrorReason[e.reason] !== undefined && e.reason >= 0
            ? e.reason
            : ErrorReason.ERROR_REASON_UNSPECIFIED;
        const md: Record<string, string> = e.field ? { field: e.field } : {};
        return { error: TotpdError.of(e.code as Status, reason, e.message, e.field, md) };
      }
      return { outcome: outcomeFromProto(res.outcome) };
    });
  }

  /**
   * Disables one factor ("" for every factor of the account) with a current
   * valid code, which is consumed. `force: true` is the privileged admin
   * override that needs no code: reserve it for authenticated admin paths.
   * Idempotent per `requestId`.
   */
  async disable(accountId: string, options: DisableOptions): Promise<DisableResult> {
    const r = await this.call<svc.DisableRequest, svc.DisableResponse>(this.stub.disable, {
      accountId,
      factorId: options.factorId ?? "",
      code: options.code ?? "",
      force: options.force ?? false,
      requestId: requestIdOf(options),
    });
    return { outcome: outcomeFromProto(r.outcome), factors: r.factors.map(factorFromProto) };
  }

  /** Returns one factor (never secret material). */
  async getFactor(accountId: string, factorId: string): Promise<Factor> {
    const r = await this.call<svc.GetFactorRequest, svc.GetFactorResponse>(this.stub.getFactor, {
      accountId,
      factorId,
    });
    return factorFromProto(r.factor);
  }

  /** Returns the account's factors, newest first. */
  async listFactors(accountId: string, includeInactive = false): Promise<Factor[]> {
    const r = await this.call<svc.ListFactorsRequest, svc.ListFactorsResponse>(
      this.stub.listFactors,
      {
        accountId,
        includeInactive,
      },
    );
    return r.factors.map(factorFromProto);
  }

  /** listFactors with the account's recovery codes status. */
  async mfaStatus(accountId: string, includeInactive = false): Promise<MfaStatus> {
    const r = await this.call<svc.ListFactorsRequest, svc.ListFactorsResponse>(
      this.stub.listFactors,
      { accountId, includeInactive },
    );
    return {
      factors: r.factors.map(factorFromProto),
      recoveryCodes: recoveryStatusFromProto(r.recoveryCodes),
    };
  }

  /**
   * Makes a new set of recovery codes for an account with an ACTIVE factor; any
   * earlier set stops working. Retried only on OVERLOADED: after UNAVAILABLE a
   * set may have been made whose response was lost; calling again makes a fresh
   * one (the lost one is dead).
   */
  async generateRecoveryCodes(accountId: string): Promise<RecoveryCodes> {
    const r = await this.call<lc.GenerateRecoveryCodesRequest, lc.GenerateRecoveryCodesResponse>(
      this.stub.generateRecoveryCodes,
      { accountId },
      refusedBeforeWork,
    );
    return recoveryCodesFromProto(r);
  }

  /**
   * Consumes one recovery code, typed in any case, with or without separators;
   * wrong codes count toward the account's attempt limits. Retried only on
   * OVERLOADED, never on a failure that may have consumed the code (UNAVAILABLE).
   */
  async verifyRecoveryCode(accountId: string, code: string): Promise<RecoveryCodeVerdict> {
    const r = await this.call<lc.VerifyRecoveryCodeRequest, lc.VerifyRecoveryCodeResponse>(
      this.stub.verifyRecoveryCode,
      { accountId, code },
      refusedBeforeWork,
    );
    return recoveryVerdictFromProto(r);
  }

  /**
   * Lifts the account's attempt limits (needs the admin permission): every live
   * factor's failures and backoff, or only `factorId`'s; the account-wide lock,
   * run of failures and failure budget either way. Idempotent, so retried like
   * enroll; the result describes the last attempt.
   */
  async unlock(accountId: string, factorId = ""): Promise<UnlockResult> {
    const r = await this.call<lc.UnlockRequest, lc.UnlockResponse>(this.stub.unlock, {
      accountId,
      factorId,
    });
    return unlockFromProto(r);
  }

  /**
   * Measures an ACTIVE factor's clock drift from two consecutive codes of its app
   * (`code2` the one after `code1`) and stores it; both steps are consumed.
   * INVALID (no such pair) and REPLAYED (its steps were already used; no drift
   * stored) each count as one failure. Retried only on OVERLOADED.
   */
  async resync(
    accountId: string,
    factorId: string,
    code1: string,
    code2: string,
  ): Promise<ResyncResult> {
    const r = await this.call<lc.ResyncRequest, lc.ResyncResponse>(
      this.stub.resync,
      { accountId, factorId, code1, code2 },
      refusedBeforeWork,
    );
    return resyncFromProto(r);
  }

  /**
   * One page of audit events, oldest first (needs the admin permission).
   * `pageSize` 0 means the server's default (100); pass the page's
   * `nextPageToken`, with the same filter, for the next one, or use auditEvents.
   */
  async listAuditEvents(
    filter: AuditFilter = {},
    page: { pageSize?: number; pageToken?: string } = {},
  ): Promise<AuditPage> {
    const r = await this.call<audit.ListAuditEventsRequest, audit.ListAuditEventsResponse>(
      this.stub.listAuditEvents,
      {
        tenant: filter.tenant ?? "",
        accountId: filter.accountId ?? "",
        caller: filter.caller ?? "",
        method: filter.method ?? "",
        startTimeUnixMicros: micros(filter.since),
        endTimeUnixMicros: micros(filter.until),
        pageSize: page.pageSize ?? 0,
        pageToken: page.pageToken ?? "",
      },
    );
    return { events: r.events.map(auditEventFromProto), nextPageToken: r.nextPageToken };
  }

  /**
   * Every matching event, oldest first, fetched page after page (each page one
   * call with its own deadline); `limit` stops early.
   */
  async *auditEvents(filter: AuditFilter = {}, limit?: number): AsyncGenerator<AuditEvent> {
    let pageToken = "";
    let left = limit ?? Infinity;
    while (left > 0) {
      const pageSize = Number.isFinite(left) ? Math.min(left, 100) : 0;
      const page = await this.listAuditEvents(filter, { pageSize, pageToken });
      for (const e of page.events.slice(0, left)) yield e;
      left -= page.events.length;
      pageToken = page.nextPageToken;
      if (!pageToken) return;
    }
  }

  /** One logical call: the same `req` (and request id) on every attempt that `retry` allows. */
  private async call<Req, Resp>(
    method: Unary<Req, Resp>,
    req: Req,
    retry: (e: TotpdError) => boolean = retryable,
  ): Promise<Resp> {
    const deadline = Date.now() + this.timeoutMs;
    let backoff = this.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await new Promise<Resp>((resolve, reject) => {
          method.call(this.stub, req, this.metadata(), { deadline }, (err, resp) =>
            err ? reject(err) : resolve(resp),
          );
        });
      } catch (err) {
        const e = TotpdError.fromServiceError(err);
        const jitter = backoff / 2 + Math.random() * (backoff / 2);
        const wait = Math.max(jitter, e.retryAfterMs ?? 0);
        if (!retry(e) || attempt >= this.maxAttempts || Date.now() + wait >= deadline) throw e;
        await sleep(wait);
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
      }
    }
  }
}

/** The caller's request id, or a new random one. */
function requestIdOf(options: MutationOptions): string {
  return options.requestId || randomUUID();
}

/**
 * Whether no work was done, so another attempt is safe and may succeed.
 * UNAVAILABLE: the server or its database was unreachable (or the response was
 * lost: a mutating call's request id makes the retry return the first result).
 * OVERLOADED: refused before any work. RATE_LIMITED is deliberately not
 * retried: the caller must stop, not wait and guess again.
 */
function retryable(e: TotpdError): boolean {
  return (
    e.code === Status.UNAVAILABLE ||
    (e.code === Status.RESOURCE_EXHAUSTED && e.reason === ErrorReason.ERROR_REASON_OVERLOADED)
  );
}
