package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.totpd.client.FakeTotpd.Received;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.ListAuditEventsRequest;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;

/** ListAuditEvents: the filter on the wire, events decoded, the lazy paging stream. */
class TotpdAuditTest {
  private static final long T0 = 1_764_662_400_123_456L; // 2025-12-02 08:00:00.123456 UTC, µs

  private static List<dev.totpd.v1.AuditEvent> events(int n) {
    List<dev.totpd.v1.AuditEvent> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(
          dev.totpd.v1.AuditEvent.newBuilder()
              .setEventId(i + 1)
              .setTimeUnixMicros(T0 + i)
              .setCaller("payments")
              .setMethod("Verify")
              .setVerifyResult(dev.totpd.v1.VerifyResult.VERIFY_RESULT_VALID)
              .setStatusCode("OK")
              .build());
    }
    return out;
  }

  private static ListAuditEventsRequest request(Received r) {
    return (ListAuditEventsRequest) r.request();
  }

  @Test
  void sendsTheFilterAndDecodesAnEvent() throws Exception {
    try (var fake = new FakeTotpd();
        var c = TotpdClient.builder(fake.target()).plaintext().build()) {
      fake.auditEvents =
          List.of(
              dev.totpd.v1.AuditEvent.newBuilder()
                  .setEventId(7)
                  .setTimeUnixMicros(T0)
                  .setCaller("console")
                  .setMethod("Enroll")
                  .setErrorReason(ErrorReason.ERROR_REASON_PERMISSION_DENIED)
                  .setStatusCode("PERMISSION_DENIED")
                  .build());
      AuditPage page =
          c.listAuditEvents(
              AuditFilter.all()
                  .tenant("shop")
                  .accountId("alice")
                  .caller("console")
                  .method("Enroll")
                  .since(Instant.parse("2025-12-01T00:00:00Z"))
                  .until(Instant.parse("2025-12-03T00:00:00Z")),
              10,
              "");
      ListAuditEventsRequest r = request(fake.received().get(0));
      assertEquals(
          List.of("shop", "alice", "console", "Enroll"),
          List.of(r.getTenant(), r.getAccountId(), r.getCaller(), r.getMethod()));
      assertEquals(1_764_547_200_000_000L, r.getStartTimeUnixMicros());
      assertEquals(1_764_720_000_000_000L, r.getEndTimeUnixMicros());
      assertEquals(10, r.getPageSize());
      assertEquals("", page.nextPageToken());
      assertEquals(
          new AuditEvent(
              7,
              Instant.parse("2025-12-02T08:00:00.123456Z"),
              "console",
              "",
              "Enroll",
              "",
              "",
              Optional.empty(),
              ErrorReason.ERROR_REASON_PERMISSION_DENIED,
              "PERMISSION_DENIED",
              0,
              "",
              ""),
          page.events().get(0));
    }
  }

  @Test
  void theStreamFollowsThePageTokensLazily() throws Exception {
    try (var fake = new FakeTotpd();
        var c = TotpdClient.builder(fake.target()).plaintext().build()) {
      fake.auditEvents = events(230);
      AuditFilter verify = AuditFilter.all().method("Verify");
      assertEquals(
          LongStream.rangeClosed(1, 230).boxed().toList(),
          c.auditEvents(verify).map(AuditEvent::eventId).toList());
      List<Received> got = fake.received();
      assertEquals(
          List.of("", "100", "200"), got.stream().map(r -> request(r).getPageToken()).toList());
      got.forEach(r -> assertEquals("Verify", request(r).getMethod()));
      assertEquals(
          Optional.of(VerifyResult.VALID), c.auditEvents(verify).findFirst().get().verifyResult());
      assertEquals(5, c.auditEvents(verify).limit(5).count());
      assertEquals(5, fake.received().size(), "a limit within the first page fetches one page");
    }
  }
}
