package dev.totpd.client;

import java.util.List;

/**
 * ListFactors' full answer.
 *
 * @param factors the account's factors, newest first
 * @param recoveryCodes the account's recovery codes status
 */
public record FactorList(List<Factor> factors, RecoveryCodesStatus recoveryCodes) {}
