package dev.totpd.client;

/**
 * The verdict on one recovery code.
 *
 * @param outcome VALID once per code (it also lifts the lock after too many consecutive failures,
 *     which does not stop a recovery code), REPLAYED for a used code, INVALID for a code of no
 *     current set (both counted as failures), LOCKED (nothing compared, retryAfter set) while the
 *     account's failure budget is spent; its factorId is empty
 * @param status the account's codes after the attempt
 */
public record RecoveryCodeVerdict(VerifyOutcome outcome, RecoveryCodesStatus status) {}
