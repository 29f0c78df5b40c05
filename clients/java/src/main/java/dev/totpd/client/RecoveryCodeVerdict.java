package dev.totpd.client;

/**
 * The verdict on one recovery code.
 *
 * @param outcome VALID once per code, REPLAYED for a used code, INVALID for a code of no current
 *     set, LOCKED under the account's attempt limits; its factorId is empty
 * @param status the account's codes after the attempt
 */
public record RecoveryCodeVerdict(VerifyOutcome outcome, RecoveryCodesStatus status) {}
