import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { ErrorReason } from "./gen/totpd/v1/errors.js";

/** The google.rpc.ErrorInfo domain of totpd's errors. */
export const DOMAIN = "totpd.v1";
const DETAILS_KEY = "grpc-status-details-bin";
const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";
const RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo";

/**
 * A failed totpd call: the gRPC status code, the machine-readable reason and
 * the request field at fault, decoded from the google.rpc.ErrorInfo in the
 * status details. A wrong or reused code is never an error: see VerifyOutcome.
 */
export class TotpdError extends Error {
  override readonly name: string = "TotpdError";
  /**
   * The wait in milliseconds the server asked for in a google.rpc.RetryInfo
   * detail (OVERLOADED, RATE_LIMITED); undefined when the status carried none.
   */
  readonly retryAfterMs: number | undefined;

  constructor(
    /** The gRPC status code (grpc-js `status` enum). */
    readonly code: Status,
    /** ERROR_REASON_UNSPECIFIED when the status had no totpd ErrorInfo. */
    readonly reason: ErrorReason,
    message: string,
    /** The request field at fault, or "". */
    readonly field: string = "",
    readonly metadata: Readonly<Record<string, string>> = {},
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(`${Status[code] ?? code} ${ErrorReason[reason] ?? reason}: ${message}`, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** The reason's proto name, e.g. "ERROR_REASON_MALFORMED_CODE". */
  get reasonName(): string {
    return ErrorReason[this.reason] ?? "ERROR_REASON_UNSPECIFIED";
  }

  /** Decodes a grpc-js ServiceError (or anything else) into a TotpdError. */
  static fromServiceError(err: unknown): TotpdError {
    if (err instanceof TotpdError) return err;
    const se = err as Partial<ServiceError>;
    const code = typeof se.code === "number" ? se.code : Status.UNKNOWN;
    let message = se.details ?? (err instanceof Error ? err.message : String(err));
    let reason = ErrorReason.ERROR_REASON_UNSPECIFIED;
    let metadata: Record<string, string> = {};
    let retryAfterMs: number | undefined;
    const raw = se.metadata instanceof Metadata ? se.metadata.get(DETAILS_KEY)[0] : undefined;
    if (raw instanceof Uint8Array) {
      try {
        const st = decodeStatus(raw);
        message = st.message || message;
        let foundInfo = false;
        for (const d of st.details) {
          if (d.typeUrl === RETRY_INFO_TYPE) {
            retryAfterMs = decodeRetryDelayMs(d.value);
          } else if (d.typeUrl === ERROR_INFO_TYPE && !foundInfo) {
            const info = decodeErrorInfo(d.value);
            if (info.domain !== DOMAIN) continue;
            reason = parseReason(info.reason);
            metadata = info.metadata;
            foundInfo = true;
          }
        }
      } catch {
        // A malformed trailer leaves the reason unspecified.
      }
    }
    return TotpdError.of(code, reason, message, metadata.field ?? "", metadata, {
      cause: err,
      retryAfterMs,
    });
  }

  /** A TotpdError, or the subclass of its kind (UnauthenticatedError, ...). */
  static of(
    code: Status,
    reason: ErrorReason,
    message: string,
    field = "",
    metadata: Readonly<Record<string, string>> = {},
    options?: { cause?: unknown; retryAfterMs?: number },
  ): TotpdError {
    let kind = TotpdError;
    if (code === Status.UNAUTHENTICATED) kind = UnauthenticatedError;
    else if (code === Status.PERMISSION_DENIED) kind = PermissionDeniedError;
    else if (reason === ErrorReason.ERROR_REASON_TENANT_REQUIRED) kind = TenantRequiredError;
    return new kind(code, reason, message, field, metadata, options);
  }
}

/**
 * UNAUTHENTICATED: no credential, or one the server does not know (reason
 * ERROR_REASON_UNAUTHENTICATED; a proxy's bare status too). Fix the token or
 * the client certificate; never retried.
 */
export class UnauthenticatedError extends TotpdError {
  override readonly name: string = "UnauthenticatedError";
}

/**
 * PERMISSION_DENIED: a known caller without the permission, or without the
 * tenant it named. Nothing was read or written; never retried.
 */
export class PermissionDeniedError extends TotpdError {
  override readonly name: string = "PermissionDeniedError";
}

/**
 * INVALID_ARGUMENT with reason ERROR_REASON_TENANT_REQUIRED: the caller holds
 * several tenants and named none; set the `tenant` option. Never retried.
 */
export class TenantRequiredError extends TotpdError {
  override readonly name: string = "TenantRequiredError";
}

/** Maps a reason name to the enum; unknown (newer) names become UNSPECIFIED. */
export function parseReason(name: string): ErrorReason {
  const v = (ErrorReason as unknown as Record<string, number>)[name];
  return typeof v === "number" && v >= 0
    ? (v as ErrorReason)
    : ErrorReason.ERROR_REASON_UNSPECIFIED;
}

interface AnyMsg {
  typeUrl: string;
  value: Uint8Array;
}

// google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; }
function decodeStatus(buf: Uint8Array): { code: number; message: string; details: AnyMsg[] } {
  const r = new BinaryReader(buf);
  const out = { code: 0, message: "", details: [] as AnyMsg[] };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1) out.code = r.int32();
    else if (field === 2) out.message = r.string();
    else if (field === 3) out.details.push(decodeAny(r.bytes()));
    else r.skip(wire);
  }
  return out;
}

// google.protobuf.Any { string type_url = 1; bytes value = 2; }
function decodeAny(buf: Uint8Array): AnyMsg {
  const r = new BinaryReader(buf);
  const out: AnyMsg = { typeUrl: "", value: new Uint8Array() };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1) out.typeUrl = r.string();
    else if (field === 2) out.value = r.bytes();
    else r.skip(wire);
  }
  return out;
}

// google.rpc.ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
function decodeErrorInfo(buf: Uint8Array): {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
} {
  const r = new BinaryReader(buf);
  const out = { reason: "", domain: "", metadata: {} as Record<string, string> };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1) out.reason = r.string();
    else if (field === 2) out.domain = r.string();
    else if (field === 3) {
      const e = new BinaryReader(r.bytes());
      let k = "";
      let v = "";
      while (e.pos < e.len) {
        const [f, w] = e.tag();
        if (f === 1) k = e.string();
        else if (f === 2) v = e.string();
        else e.skip(w);
      }
      out.metadata[k] = v;
    } else r.skip(wire);
  }
  return out;
}

// google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; }
// google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2; }
function decodeRetryDelayMs(buf: Uint8Array): number {
  const r = new BinaryReader(buf);
  let seconds = 0;
  let nanos = 0;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field !== 1) {
      r.skip(wire);
      continue;
    }
    const d = new BinaryReader(r.bytes());
    while (d.pos < d.len) {
      const [f, w] = d.tag();
      if (f === 1) seconds = Number(d.int64());
      else if (f === 2) nanos = d.int32();
      else d.skip(w);
    }
  }
  return Math.max(0, seconds * 1000 + nanos / 1e6);
}
