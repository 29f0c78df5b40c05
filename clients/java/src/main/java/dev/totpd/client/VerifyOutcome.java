package dev.totpd.client;

import java.time.Duration;

/**
 * The verdict on one code with what the caller needs to act on it.
 *
 * @param result the verdict
 * @param factorId the factor that matched (VALID, REPLAYED) or is locked; empty otherwise
 * @param stepOffset for VALID, the matched step minus the server's step: -1, 0 or 1 plus the
 *     factor's driftSteps; for a VALID resync, the new drift
 * @param attemptsLeft failures left before the factor locks
 * @param retryAfter for LOCKED and during backoff, when the next attempt is compared
 * @param unlockRequired for LOCKED: the account stays locked until an operator unlocks it ({@code
 *     unlock}) or the user signs in with a recovery code ({@code verifyRecoveryCode}); waiting does
 *     not help, retryAfter is zero
 */
public record VerifyOutcome(
    VerifyResult result,
    String factorId,
    int stepOffset,
    int attemptsLeft,
    Duration retryAfter,
    boolean unlockRequired) {

  /** An outcome without {@code unlockRequired}, as before that field existed. */
  public VerifyOutcome(
      VerifyResult result, String factorId, int stepOffset, int attemptsLeft, Duration retryAfter) {
    this(result, factorId, stepOffset, attemptsLeft, retryAfter, false);
  }

  /** True only for {@link VerifyResult#VALID}. */
  public boolean isValid() {
    return result == VerifyResult.VALID;
  }

  static VerifyOutcome fromProto(dev.totpd.v1.VerifyOutcome o) {
    return new VerifyOutcome(
        VerifyResult.fromProto(o.getResult()),
        o.getFactorId(),
        o.getStepOffset(),
        o.getAttemptsLeft(),
        Duration.ofSeconds(Integer.toUnsignedLong(o.getRetryAfterSeconds())),
        o.getUnlockRequired());
  }
}
