package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** listAuditEvents / auditEvents against a real totpd (the implicit local caller holds admin). */
class TotpdAuditLiveTest {
  private static TotpdServer server;
  private static TotpdClient client;

  @BeforeAll
  static void start() throws Exception {
    server = TotpdServer.start();
    client = TotpdClient.builder(server.target).plaintext().build();
  }

  @AfterAll
  static void stop() throws Exception {
    if (client != null) {
      client.close();
    }
    if (server != null) {
      server.close();
    }
  }

  @Test
  void listsARealEnrollment() {
    String account = "java-live-audit-" + UUID.randomUUID();
    Enrollment e = client.enroll(account, "phone");
    assertEquals(
        List.of(List.of("Enroll", e.factor().factorId(), "OK", "local")),
        client
            .auditEvents(AuditFilter.all().accountId(account))
            .map(ev -> List.of(ev.method(), ev.factorId(), ev.statusCode(), ev.caller()))
            .toList());
  }
}
