package dev.totpd.client;

import dev.totpd.v1.Algorithm;
import dev.totpd.v1.FactorState;
import java.time.Instant;
import java.util.Optional;

/**
 * One authenticator app of one account, without secret material.
 *
 * @param factorId server-assigned identifier
 * @param accountId the owning account
 * @param label the device name, unique within the account
 * @param issuer the issuer shown in the app
 * @param algorithm HMAC algorithm
 * @param digits code length
 * @param periodSeconds time step in seconds
 * @param state life-cycle state
 * @param createdAt creation time
 * @param confirmedAt confirmation time, if confirmed
 * @param lastUsedAt last successful verification, if any
 * @param expiresAt when a PENDING enrollment expires
 * @param driftSteps the app's measured clock drift in time steps (set by {@code resync}):
 *     verifications centre their window on the server's step plus it
 */
public record Factor(
    String factorId,
    String accountId,
    String label,
    String issuer,
    Algorithm algorithm,
    int digits,
    int periodSeconds,
    FactorState state,
    Instant createdAt,
    Optional<Instant> confirmedAt,
    Optional<Instant> lastUsedAt,
    Optional<Instant> expiresAt,
    int driftSteps) {

  /** A factor without {@code driftSteps} (0), as before that field existed. */
  public Factor(
      String factorId,
      String accountId,
      String label,
      String issuer,
      Algorithm algorithm,
      int digits,
      int periodSeconds,
      FactorState state,
      Instant createdAt,
      Optional<Instant> confirmedAt,
      Optional<Instant> lastUsedAt,
      Optional<Instant> expiresAt) {
    this(
        factorId,
        accountId,
        label,
        issuer,
        algorithm,
        digits,
        periodSeconds,
        state,
        createdAt,
        confirmedAt,
        lastUsedAt,
        expiresAt,
        0);
  }

  private static Optional<Instant> time(long unix) {
    return unix == 0 ? Optional.empty() : Optional.of(Instant.ofEpochSecond(unix));
  }

  static Factor fromProto(dev.totpd.v1.Factor f) {
    return new Factor(
        f.getFactorId(),
        f.getAccountId(),
        f.getLabel(),
        f.getIssuer(),
        f.getAlgorithm(),
        f.getDigits(),
        f.getPeriodSeconds(),
        f.getState(),
        Instant.ofEpochSecond(f.getCreatedAtUnix()),
        time(f.getConfirmedAtUnix()),
        time(f.getLastUsedAtUnix()),
        time(f.getExpiresAtUnix()),
        f.getDriftSteps());
  }
}
