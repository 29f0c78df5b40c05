package dev.totpd.client;

/**
 * The outcome of confirming an enrollment: VALID activates the factor.
 *
 * @param outcome the verdict on the code
 * @param factor the factor after the attempt
 */
public record Confirmation(VerifyOutcome outcome, Factor factor) {}
