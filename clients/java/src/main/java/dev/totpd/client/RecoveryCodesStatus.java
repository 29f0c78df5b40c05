package dev.totpd.client;

import java.time.Instant;
import java.util.Optional;

/**
 * How many recovery codes an account has left, never the codes themselves.
 *
 * @param remaining unused codes of the current set; 0 when the account has no set
 * @param issued how many codes the current set had when it was generated; 0 when none
 * @param generatedAt when the current set was generated; empty when none
 */
public record RecoveryCodesStatus(int remaining, int issued, Optional<Instant> generatedAt) {
  static RecoveryCodesStatus fromProto(dev.totpd.v1.RecoveryCodesStatus s) {
    long at = s.getGeneratedAtUnix();
    return new RecoveryCodesStatus(
        s.getRemaining(),
        s.getIssued(),
        at == 0 ? Optional.empty() : Optional.of(Instant.ofEpochSecond(at)));
  }
}
