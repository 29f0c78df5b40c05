package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.totpd.client.FakeTotpd.Fail;
import dev.totpd.client.FakeTotpd.Received;
import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Token and tenant reach the server as call metadata; refused identities are typed exceptions. */
class TotpdIdentityTest {
  private static final String TOKEN = "tok_java_0123456789";

  @Test
  void theTokenAndTenantAreSentOnEveryCallAndRetry() throws Exception {
    try (var fake = new FakeTotpd(FakeTotpd.UNAVAILABLE);
        var c =
            TotpdClient.builder(fake.target())
                .plaintext()
                .token(TOKEN)
                .tenant("shop")
                .backoff(Duration.ofMillis(1), Duration.ofMillis(2))
                .build()) {
      c.verify("alice", "123456");
      c.enroll("alice", "phone");
      c.listAuditEvents(AuditFilter.all(), 0, "");
      List<Received> got = fake.received();
      assertEquals(
          List.of("Verify", "Verify", "Enroll", "ListAuditEvents"),
          got.stream().map(Received::method).toList());
      for (Received r : got) {
        assertEquals("Bearer " + TOKEN, r.header("authorization"));
        assertEquals("shop", r.header("x-totpd-tenant"));
      }
    }
  }

  @Test
  void withoutTheOptionsNeitherIsSent() throws Exception {
    try (var fake = new FakeTotpd();
        var c = TotpdClient.builder(fake.target()).plaintext().build()) {
      c.verify("alice", "123456");
      assertNull(fake.received().get(0).header("authorization"));
      assertNull(fake.received().get(0).header("x-totpd-tenant"));
    }
  }

  @Test
  void refusedIdentitiesAreTypedAndNeverRetried() throws Exception {
    Map<Fail, Class<? extends TotpdException>> cases =
        Map.of(
            Fail.of(Status.Code.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED"),
            UnauthenticatedException.class,
            Fail.of(Status.Code.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED"),
            PermissionDeniedException.class,
            Fail.of(Status.Code.INVALID_ARGUMENT, "ERROR_REASON_TENANT_REQUIRED"),
            TenantRequiredException.class,
            Fail.of(Status.Code.UNAUTHENTICATED, null), // a proxy's bare status
            UnauthenticatedException.class);
    for (var tc : cases.entrySet()) {
      Fail f = tc.getKey();
      try (var fake = new FakeTotpd(f, f, f);
          var c = TotpdClient.builder(fake.target()).plaintext().token(TOKEN).build()) {
        TotpdException e = assertThrows(TotpdException.class, () -> c.verify("alice", "1"));
        assertInstanceOf(tc.getValue(), e, f.toString());
        assertEquals(f.code(), e.code());
        assertEquals(
            f.reason() == null
                ? ErrorReason.ERROR_REASON_UNSPECIFIED
                : ErrorReason.valueOf(f.reason()),
            e.reason());
        assertEquals(1, fake.received().size(), "never retried: " + f);
        assertFalse(e.getMessage().contains(TOKEN));
      }
    }
  }

  @Test
  void aTokenInPlaintextBeyondLoopbackIsRefusedUnlessAllowed() {
    var e =
        assertThrows(
            IllegalStateException.class,
            () -> TotpdClient.builder("totpd.internal:50051").plaintext().token(TOKEN).build());
    assertTrue(e.getMessage().contains("refusing to send the token in plaintext"));
    assertFalse(e.getMessage().contains(TOKEN));
    TotpdClient.builder("totpd.internal:50051")
        .plaintext()
        .token(TOKEN)
        .allowTokenOverPlaintext()
        .build()
        .close();
    TotpdClient.builder("totpd.internal:50051").token(TOKEN).build().close();
    TotpdClient.builder("localhost:50051").plaintext().token(TOKEN).build().close();
  }

  @Test
  void aMalformedTokenOrTenantIsRefusedWithoutEchoingIt() {
    for (String bad : new String[] {"", " padded", "line\nbreak", "naïve"}) {
      var b = TotpdClient.builder("127.0.0.1:1");
      var t = assertThrows(IllegalArgumentException.class, () -> b.token(bad));
      assertTrue(t.getMessage().startsWith("token"));
      assertTrue(bad.isEmpty() || !t.getMessage().contains(bad));
      assertThrows(IllegalArgumentException.class, () -> b.tenant(bad));
    }
  }

  @Test
  void loopbackTargetsAreToldFromTheOthers() {
    for (String t :
        List.of(
            "127.0.0.1:50051",
            "ipv4:127.0.0.1:50051",
            "[::1]:50051",
            "LOCALHOST:1",
            "dns:///localhost:50051",
            "unix:/run/totpd.sock")) {
      assertTrue(Identity.isLoopback(t), t);
    }
    for (String t :
        List.of("10.0.0.5:50051", "dns:///totpd.internal:50051", "[2001:db8::1]:50051")) {
      assertFalse(Identity.isLoopback(t), t);
    }
  }
}
