package dev.totpd.client;

/** The verdict on one code. A wrong or reused code is a result, never an exception. */
public enum VerifyResult {
  /** The code matched an unused time step: let the user in. */
  VALID,
  /** The code matched nothing. Counts as a failure. */
  INVALID,
  /** The code's time step was already used (a replay). Counts as a failure. */
  REPLAYED,
  /** Too many failures: no code was compared; see {@link VerifyOutcome#retryAfter()}. */
  LOCKED,
  /** A value this client version does not know. Treat it as a refusal. */
  UNKNOWN;

  static VerifyResult fromProto(dev.totpd.v1.VerifyResult r) {
    switch (r) {
      case VERIFY_RESULT_VALID:
        return VALID;
      case VERIFY_RESULT_INVALID:
        return INVALID;
      case VERIFY_RESULT_REPLAYED:
        return REPLAYED;
      case VERIFY_RESULT_LOCKED:
        return LOCKED;
      default:
        return UNKNOWN;
    }
  }
}
