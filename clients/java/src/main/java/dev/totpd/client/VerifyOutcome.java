package dev.totpd.client;

import java.time.Duration;

/**
 * The verdict on one code with what the caller needs to act on it.
 *
 * @param result the verdict
 * @param factorId the factor that matched (VALID, REPLAYED) or is locked; empty otherwise
 * @param stepOffset for VALID, the matched step minus the server's step (-1, 0 or 1)
 * @param attemptsLeft failures left before the factor locks
 * @param retryAfter for LOCKED and during backoff, when the next attempt is compared
 */
public record VerifyOutcome(
    VerifyResult result, String factorId, int stepOffset, int attemptsLeft, Duration retryAfter) {

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
        Duration.ofSeconds(Integer.toUnsignedLong(o.getRetryAfterSeconds())));
  }
}
