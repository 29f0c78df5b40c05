package dev.totpd.client;

import java.util.Optional;

/**
 * The answer to one batch item: exactly one of an outcome or this item's own error.
 *
 * @param outcome the verdict, when the item could be judged
 * @param error why the item could not be judged (malformed code, unknown account...)
 */
public record BatchResult(Optional<VerifyOutcome> outcome, Optional<TotpdException> error) {

  /** True when the item has a verdict and it is VALID. */
  public boolean isValid() {
    return outcome.map(VerifyOutcome::isValid).orElse(false);
  }

  static BatchResult fromProto(dev.totpd.v1.BatchVerifyResult r) {
    if (r.hasError()) {
      return new BatchResult(
          Optional.empty(), Optional.of(TotpdException.fromItemError(r.getError())));
    }
    return new BatchResult(Optional.of(VerifyOutcome.fromProto(r.getOutcome())), Optional.empty());
  }
}
