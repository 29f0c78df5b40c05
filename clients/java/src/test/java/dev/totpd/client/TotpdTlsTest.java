package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.FactorState;
import io.grpc.Status;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The client's TLS and mTLS options against a totpd that requires client certificates. */
class TotpdTlsTest {
  private static Path tls;
  private static TotpdServer server;

  @BeforeAll
  static void start() throws Exception {
    tls = TotpdServer.writeTlsFiles();
    server =
        TotpdServer.start(
            List.of(
                "--tls-cert-file", tls.resolve("server.pem").toString(),
                "--tls-key-file", tls.resolve("server.key").toString(),
                "--tls-client-ca-file", tls.resolve("ca.pem").toString()));
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
    if (tls != null) {
      TotpdServer.deleteTree(tls);
    }
  }

  @Test
  void enrollsAndListsWithAClientCertificate() {
    String account = "java-mtls-" + UUID.randomUUID();
    try (TotpdClient client =
        TotpdClient.builder(server.target)
            .rootCerts(tls.resolve("ca.pem").toFile())
            .clientCertificate(
                tls.resolve("client.pem").toFile(), tls.resolve("client.key").toFile())
            .deadline(Duration.ofSeconds(10))
            .build()) {
      Enrollment e = client.enroll(account, "Pixel 8");
      assertEquals(FactorState.FACTOR_STATE_PENDING, e.factor().state());
      List<Factor> listed = client.listFactors(account, false);
      assertEquals(List.of(e.factor().factorId()), listed.stream().map(Factor::factorId).toList());
    }
  }

  @Test
  void withoutAClientCertificateIsUnavailable() {
    try (TotpdClient client =
        TotpdClient.builder(server.target)
            .rootCerts(tls.resolve("ca.pem").toFile())
            .maxAttempts(1)
            .deadline(Duration.ofSeconds(5))
            .build()) {
      TotpdException error =
          assertThrows(
              TotpdException.class,
              () -> client.listFactors("java-mtls-" + UUID.randomUUID(), false));
      assertEquals(Status.Code.UNAVAILABLE, error.code());
      assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, error.reason());
    }
  }
}
