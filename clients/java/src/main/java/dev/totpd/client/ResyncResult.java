package dev.totpd.client;

/**
 * The outcome of a resync: for VALID, {@code outcome.stepOffset()} and {@code factor.driftSteps()}
 * are the new drift.
 *
 * @param outcome the verdict on the pair of codes
 * @param factor the factor after the attempt
 */
public record ResyncResult(VerifyOutcome outcome, Factor factor) {}
