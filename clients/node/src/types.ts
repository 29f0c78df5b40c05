import * as pb from "./gen/totpd/v1/factor.js";
import type { TotpdError } from "./errors.js";

export { Algorithm, FactorState } from "./gen/totpd/v1/factor.js";

/** The verdict on one code. A wrong or reused code is a result, not an error. */
export type VerifyResult = "VALID" | "INVALID" | "REPLAYED" | "LOCKED" | "UNSPECIFIED";

export function verifyResultFromProto(r: pb.VerifyResult): VerifyResult {
  switch (r) {
    case pb.VerifyResult.VERIFY_RESULT_VALID:
      return "VALID";
    case pb.VerifyResult.VERIFY_RESULT_INVALID:
      return "INVALID";
    case pb.VerifyResult.VERIFY_RESULT_REPLAYED:
      return "REPLAYED";
    case pb.VerifyResult.VERIFY_RESULT_LOCKED:
      return "LOCKED";
    default:
      return "UNSPECIFIED"; // newer than this client: treat it as a refusal
  }
}

/** The verdict with what a caller needs to act on it. */
export interface VerifyOutcome {
  readonly result: VerifyResult;
  /** The factor that matched (VALID, REPLAYED) or is locked; "" otherwise. */
  readonly factorId: string;
  /**
   * For VALID: the matched step minus the server's, -1, 0 or 1 plus the factor's
   * driftSteps; for a VALID resync, the new drift.
   */
  readonly stepOffset: number;
  /** Failures left before the factor locks. */
  readonly attemptsLeft: number;
  /** For LOCKED and during backoff: seconds until the next attempt is compared. */
  readonly retryAfterSeconds: number;
  /**
   * For LOCKED: the account stays locked until an operator unlocks it (unlock)
   * or the user signs in with a recovery code (verifyRecoveryCode); waiting
   * does not help.
   */
  readonly unlockRequired: boolean;
}

export function outcomeFromProto(o: pb.VerifyOutcome | undefined): VerifyOutcome {
  return {
    result: verifyResultFromProto(o?.result ?? pb.VerifyResult.VERIFY_RESULT_UNSPECIFIED),
    factorId: o?.factorId ?? "",
    stepOffset: o?.stepOffset ?? 0,
    attemptsLeft: o?.attemptsLeft ?? 0,
    retryAfterSeconds: o?.retryAfterSeconds ?? 0,
    unlockRequired: o?.unlockRequired ?? false,
  };
}

/** One authenticator app of one account, without secret material. */
export interface Factor {
  readonly factorId: string;
  readonly accountId: string;
  readonly label: string;
  readonly issuer: string;
  readonly algorithm: pb.Algorithm;
  readonly digits: number;
  readonly periodSeconds: number;
  readonly state: pb.FactorState;
  readonly createdAt: Date | undefined;
  readonly confirmedAt: Date | undefined;
  readonly lastUsedAt: Date | undefined;
  readonly expiresAt: Date | undefined;
  /**
   * The app's measured clock drift in time steps (set by resync): verifications
   * centre their window on the server's step plus it.
   */
  readonly driftSteps: number;
}

const time = (s: number): Date | undefined => (s ? new Date(s * 1000) : undefined);

export function factorFromProto(f: pb.Factor | undefined): Factor {
  const x = f ?? pb.Factor.create();
  return {
    factorId: x.factorId,
    accountId: x.accountId,
    label: x.label,
    issuer: x.issuer,
    algorithm: x.algorithm,
    digits: x.digits,
    periodSeconds: x.periodSeconds,
    state: x.state,
    createdAt: time(x.createdAtUnix),
    confirmedAt: time(x.confirmedAtUnix),
    lastUsedAt: time(x.lastUsedAtUnix),
    expiresAt: time(x.expiresAtUnix),
    driftSteps: x.driftSteps,
  };
}

/** Options of the calls that change state: Enroll, ConfirmEnrollment, Disable. */
export interface MutationOptions {
  /**
   * Idempotency key (AIP-155; at most 64 printable ASCII characters): a repeat
   * with the same id and the same fields within the server's retention window
   * returns the first result instead of acting twice; the same id with
   * different fields fails with REQUEST_ID_REUSED. Omitted or "": the client
   * makes a random one per call (reused by that call's retries). Pass your own
   * to retry a call yourself, e.g. after DEADLINE_EXCEEDED.
   */
  requestId?: string;
}

/** Enroll options; omitted ones take the server's defaults (SHA1, 6, 30 s). */
export interface EnrollOptions extends MutationOptions {
  label?: string;
  issuer?: string;
  algorithm?: pb.Algorithm;
  digits?: number;
  periodSeconds?: number;
}

/** Disable options: a current code, or `force` (the privileged admin override). */
export interface DisableOptions extends MutationOptions {
  factorId?: string;
  code?: string;
  force?: boolean;
}

/** A new PENDING factor and the only copy of its secret. */
export interface Enrollment {
  readonly factor: Factor;
  readonly otpauthUri: string;
  readonly secretBase32: string;
  readonly qrPng: Uint8Array;
  readonly qrSvg: string;
}

export interface Confirmation {
  readonly outcome: VerifyOutcome;
  readonly factor: Factor;
}

export interface DisableResult {
  readonly outcome: VerifyOutcome;
  /** The factors now DISABLED (empty when the code was not VALID). */
  readonly factors: readonly Factor[];
}

export interface BatchItem {
  accountId: string;
  code: string;
  factorId?: string;
}

/** Exactly one of `outcome` and `error` is set. */
export type BatchResult =
  | { readonly outcome: VerifyOutcome; readonly error?: undefined }
  | { readonly outcome?: undefined; readonly error: TotpdError };
