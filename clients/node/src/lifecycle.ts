import { status as Status } from "@grpc/grpc-js";
import { inspect } from "node:util";
import { ErrorReason } from "./gen/totpd/v1/errors.js";
import type * as lc from "./gen/totpd/v1/lifecycle.js";
import type { TotpdError } from "./errors.js";
import { type Factor, type VerifyOutcome, factorFromProto, outcomeFromProto } from "./types.js";

/** How many recovery codes an account has left, never the codes themselves. */
export interface RecoveryCodesStatus {
  /** Unused codes of the current set; 0 when the account has no set. */
  readonly remaining: number;
  /** How many codes the current set had when it was generated; 0 when none. */
  readonly issued: number;
  /** When the current set was generated; undefined when none. */
  readonly generatedAt: Date | undefined;
}

export function recoveryStatusFromProto(
  s: lc.RecoveryCodesStatus | undefined,
): RecoveryCodesStatus {
  return {
    remaining: s?.remaining ?? 0,
    issued: s?.issued ?? 0,
    generatedAt: s?.generatedAtUnix ? new Date(s.generatedAtUnix * 1000) : undefined,
  };
}

/** A new set of single-use recovery codes: the only copy. Show it once; never log or store it. */
export interface RecoveryCodes {
  readonly codes: readonly string[];
  readonly status: RecoveryCodesStatus;
}

/** The verdict on one recovery code with the account's codes after the attempt. */
export interface RecoveryCodeVerdict {
  /**
   * VALID once per code (it also lifts the lock after too many consecutive
   * failures, which does not stop a recovery code), REPLAYED for a used code,
   * INVALID for a code of no current set (both counted as failures), LOCKED
   * (nothing compared, retryAfterSeconds set) while the account's failure
   * budget is spent; `factorId` is "".
   */
  readonly outcome: VerifyOutcome;
  readonly status: RecoveryCodesStatus;
}

/** What an unlock cleared (all false and 0: nothing was locked or counted). */
export interface UnlockResult {
  /** The account was locked after too many consecutive failures. */
  readonly lockLifted: boolean;
  /** The run of consecutive failures that was cleared. */
  readonly consecutiveFailuresCleared: number;
  /** Factors whose failures, backoff or timed lock were cleared. */
  readonly factorsCleared: number;
  /** The account's failure budget was partly spent and is full again. */
  readonly budgetRefilled: boolean;
}

/** The outcome of a resync: for VALID, `outcome.stepOffset` and `factor.driftSteps` are the new drift. */
export interface ResyncResult {
  readonly outcome: VerifyOutcome;
  readonly factor: Factor;
}

/** ListFactors' full answer: the factors and the account's recovery codes status. */
export interface MfaStatus {
  readonly factors: readonly Factor[];
  readonly recoveryCodes: RecoveryCodesStatus;
}

/** The codes, which console.log and util.inspect leave out (JSON keeps them). */
export function recoveryCodesFromProto(r: lc.GenerateRecoveryCodesResponse): RecoveryCodes {
  const out = { codes: r.codes, status: recoveryStatusFromProto(r.status) };
  return Object.defineProperty(out, inspect.custom, {
    value: () =>
      `RecoveryCodes { codes: <${out.codes.length} hidden>, status: ${inspect(out.status)} }`,
    enumerable: false,
  });
}

export const recoveryVerdictFromProto = (
  r: lc.VerifyRecoveryCodeResponse,
): RecoveryCodeVerdict => ({
  outcome: outcomeFromProto(r.outcome),
  status: recoveryStatusFromProto(r.status),
});

export const unlockFromProto = (r: lc.UnlockResponse): UnlockResult => ({
  lockLifted: r.lockLifted,
  consecutiveFailuresCleared: r.consecutiveFailuresCleared,
  factorsCleared: r.factorsCleared,
  budgetRefilled: r.budgetRefilled,
});

export const resyncFromProto = (r: lc.ResyncResponse): ResyncResult => ({
  outcome: outcomeFromProto(r.outcome),
  factor: factorFromProto(r.factor),
});

/**
 * The retry policy of the calls that act on every attempt and carry no request
 * id (generateRecoveryCodes, verifyRecoveryCode, resync): only OVERLOADED,
 * refused before any work. UNAVAILABLE, even with STORE_UNAVAILABLE, may follow
 * a commit whose response (or the database's acknowledgement) was lost: a retry
 * would answer REPLAYED for the recovery code just used, burning it, consume a
 * resync's steps again, count another failure or replace the set just made.
 */
export function refusedBeforeWork(e: TotpdError): boolean {
  return e.code === Status.RESOURCE_EXHAUSTED && e.reason === ErrorReason.ERROR_REASON_OVERLOADED;
}
