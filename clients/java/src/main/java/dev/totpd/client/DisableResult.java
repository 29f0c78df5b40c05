package dev.totpd.client;

import java.util.List;

/**
 * The outcome of a Disable call.
 *
 * @param outcome the verdict on the code (VALID when forced)
 * @param factors the factors now DISABLED (empty when the code was not VALID)
 */
public record DisableResult(VerifyOutcome outcome, List<Factor> factors) {}
