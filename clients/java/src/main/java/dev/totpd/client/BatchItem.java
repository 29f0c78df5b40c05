package dev.totpd.client;

/**
 * One code of a batch.
 *
 * @param accountId the account signing in
 * @param code the code the user typed
 * @param factorId optional factor restriction; empty for every active factor
 */
public record BatchItem(String accountId, String code, String factorId) {
  public BatchItem {
    factorId = factorId == null ? "" : factorId;
  }

  public BatchItem(String accountId, String code) {
    this(accountId, code, "");
  }
}
