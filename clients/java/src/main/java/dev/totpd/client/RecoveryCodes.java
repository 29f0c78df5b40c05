package dev.totpd.client;

import java.util.List;

/**
 * A new set of single-use recovery codes: the only copy. Show it to the user once; never log or
 * store it. Its {@code toString} leaves the codes out.
 *
 * @param codes the codes, grouped for reading (for example "k7q2-9xmf-w4c8")
 * @param status the new set's status
 */
public record RecoveryCodes(List<String> codes, RecoveryCodesStatus status) {
  @Override
  public String toString() {
    return "RecoveryCodes[codes=<" + codes.size() + " hidden>, status=" + status + "]";
  }
}
