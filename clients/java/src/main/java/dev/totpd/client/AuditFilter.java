package dev.totpd.client;

import java.time.Instant;
import java.time.temporal.ChronoUnit;

/**
 * Which audit events to list: empty strings and null times match anything; {@code since} is
 * inclusive, {@code until} exclusive. Start from {@link #all()}:
 *
 * <pre>{@code
 * AuditFilter.all().accountId("alice").method("Verify").since(Instant.now().minusSeconds(3600))
 * }</pre>
 *
 * @param tenant only this tenant's events
 * @param accountId only events of this account
 * @param caller only events of this caller
 * @param method only this RPC, e.g. "Verify"
 * @param since only events at or after this time
 * @param until only events before this time
 */
public record AuditFilter(
    String tenant, String accountId, String caller, String method, Instant since, Instant until) {

  /** A filter matching every event. */
  public static AuditFilter all() {
    return new AuditFilter("", "", "", "", null, null);
  }

  /** This filter, restricted to a tenant. */
  public AuditFilter tenant(String t) {
    return new AuditFilter(t, accountId, caller, method, since, until);
  }

  /** This filter, restricted to an account. */
  public AuditFilter accountId(String a) {
    return new AuditFilter(tenant, a, caller, method, since, until);
  }

  /** This filter, restricted to a caller. */
  public AuditFilter caller(String c) {
    return new AuditFilter(tenant, accountId, c, method, since, until);
  }

  /** This filter, restricted to an RPC. */
  public AuditFilter method(String m) {
    return new AuditFilter(tenant, accountId, caller, m, since, until);
  }

  /** This filter, restricted to events at or after {@code t}. */
  public AuditFilter since(Instant t) {
    return new AuditFilter(tenant, accountId, caller, method, t, until);
  }

  /** This filter, restricted to events before {@code t}. */
  public AuditFilter until(Instant t) {
    return new AuditFilter(tenant, accountId, caller, method, since, t);
  }

  static long micros(Instant t) {
    return t == null ? 0 : ChronoUnit.MICROS.between(Instant.EPOCH, t);
  }

  static String orEmpty(String s) {
    return s == null ? "" : s;
  }
}
