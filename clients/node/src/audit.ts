import { ErrorReason } from "./gen/totpd/v1/errors.js";
import type * as audit from "./gen/totpd/v1/audit.js";
import { type VerifyResult, verifyResultFromProto } from "./types.js";

/** Which audit events to list; absent fields match anything. `since` is inclusive, `until` exclusive. */
export interface AuditFilter {
  tenant?: string;
  accountId?: string;
  caller?: string;
  /** An RPC name, e.g. "Verify". */
  method?: string;
  since?: Date;
  until?: Date;
}

/** One audited call: never a secret, a code, an otpauth URI or a token. */
export interface AuditEvent {
  readonly eventId: number;
  /** When the call was decided (`timeUnixMicros` has the microseconds). */
  readonly time: Date;
  readonly timeUnixMicros: number;
  readonly caller: string;
  /** "" for a call denied before its tenant was known. */
  readonly tenant: string;
  readonly method: string;
  readonly accountId: string;
  readonly factorId: string;
  /** "UNSPECIFIED" for a call that decided no code. */
  readonly verifyResult: VerifyResult;
  /** ERROR_REASON_UNSPECIFIED for a call that succeeded. */
  readonly errorReason: ErrorReason;
  /** The gRPC code's name: "OK", "PERMISSION_DENIED"... */
  readonly statusCode: string;
  readonly stepOffset: number;
  readonly requestId: string;
  readonly peer: string;
}

/** One page of events, oldest first; `nextPageToken` is "" on the last page. */
export interface AuditPage {
  readonly events: AuditEvent[];
  readonly nextPageToken: string;
}

export function auditEventFromProto(e: audit.AuditEvent): AuditEvent {
  const known = ErrorReason[e.errorReason] !== undefined && e.errorReason >= 0;
  return {
    eventId: e.eventId,
    time: new Date(Math.floor(e.timeUnixMicros / 1000)),
    timeUnixMicros: e.timeUnixMicros,
    caller: e.caller,
    tenant: e.tenant,
    method: e.method,
    accountId: e.accountId,
    factorId: e.factorId,
    verifyResult: verifyResultFromProto(e.verifyResult),
    errorReason: known ? e.errorReason : ErrorReason.ERROR_REASON_UNSPECIFIED,
    statusCode: e.statusCode,
    stepOffset: e.stepOffset,
    requestId: e.requestId,
    peer: e.peer,
  };
}

export function micros(d: Date | undefined): number {
  return d ? d.getTime() * 1000 : 0;
}
