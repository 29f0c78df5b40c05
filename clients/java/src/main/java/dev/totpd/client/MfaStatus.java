package dev.totpd.client;

import java.util.List;

/**
 * ListFactors' full answer: the factors and the account's recovery codes status.
 *
 * @param factors the account's factors, newest first
 * @param recoveryCodes the account's recovery codes status
 */
public record MfaStatus(List<Factor> factors, RecoveryCodesStatus recoveryCodes) {}
