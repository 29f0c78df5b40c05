package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.totpd.client.FakeTotpd.Fail;
import dev.totpd.client.FakeTotpd.Received;
import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.function.BiConsumer;
import org.junit.jupiter.api.Test;

/** Retries, request ids and RetryInfo against a scripted in-process server. */
class TotpdRetryTest {
  /** A client whose own backoff is 1-2 ms: any longer wait comes from the server's RetryInfo. */
  private static TotpdClient client(FakeTotpd fake, Duration deadline) {
    return TotpdClient.builder(fake.target())
        .plaintext()
        .deadline(deadline)
        .backoff(Duration.ofMillis(1), Duration.ofMillis(2))
        .build();
  }

  private static TotpdClient client(FakeTotpd fake) {
    return client(fake, Duration.ofSeconds(10));
  }

  /** The calls that carry a request id, by the RPC they make; a null id means "generate one". */
  private static final Map<String, BiConsumer<TotpdClient, String>> MUTATIONS =
      Map.of(
          "Enroll", (c, id) -> c.enroll("alice", "Pixel 8", id),
          "ConfirmEnrollment", (c, id) -> c.confirm("alice", "f-1", "123456", id),
          "Disable", (c, id) -> c.disable("alice", "f-1", "123456", id),
          "Disable(force)", (c, id) -> c.forceDisable("alice", "f-1", id));

  private static String rpc(String name) {
    return name.replace("(force)", "");
  }

  @Test
  void aGeneratedRequestIdIsSentAndReusedByEveryRetryOfTheCall() throws Exception {
    for (var m : MUTATIONS.entrySet()) {
      try (var fake = new FakeTotpd(FakeTotpd.UNAVAILABLE, FakeTotpd.UNAVAILABLE);
          var c = client(fake)) {
        m.getValue().accept(c, null);
        m.getValue().accept(c, null);
        List<Received> got = fake.received();
        assertEquals(4, got.size(), m.getKey());
        got.forEach(r -> assertEquals(rpc(m.getKey()), r.method()));
        String first = got.get(0).requestId();
        assertEquals(4, UUID.fromString(first).version(), m.getKey());
        assertEquals(first, got.get(1).requestId(), "the retries of one call carry its request id");
        assertEquals(first, got.get(2).requestId(), "the retries of one call carry its request id");
        assertNotEquals(first, got.get(3).requestId(), "a new call gets a new request id");
      }
    }
  }

  @Test
  void aRequestIdGivenByTheCallerIsSentOnEveryAttempt() throws Exception {
    for (var m : MUTATIONS.entrySet()) {
      try (var fake = new FakeTotpd(FakeTotpd.UNAVAILABLE);
          var c = client(fake)) {
        m.getValue().accept(c, "checkout-42");
        assertEquals(
            List.of("checkout-42", "checkout-42"),
            fake.received().stream().map(Received::requestId).toList(),
            m.getKey());
      }
    }
  }

  @Test
  void anEmptyRequestIdMeansAGeneratedOne() throws Exception {
    try (var fake = new FakeTotpd();
        var c = client(fake)) {
      c.enroll("alice", "Pixel 8", "");
      c.enroll(dev.totpd.v1.EnrollRequest.newBuilder().setAccountId("alice").build());
      fake.received().forEach(r -> assertEquals(4, UUID.fromString(r.requestId()).version()));
    }
  }

  @Test
  void overloadedIsRetriedAfterAtLeastTheServersRetryDelay() throws Exception {
    Duration delay = Duration.ofMillis(200);
    try (var fake =
            new FakeTotpd(
                new Fail(Status.Code.RESOURCE_EXHAUSTED, "ERROR_REASON_OVERLOADED", delay));
        var c = client(fake)) {
      assertTrue(c.verify("alice", "123456").isValid());
      List<Received> got = fake.received();
      assertEquals(2, got.size());
      long gap = got.get(1).atNanos() - got.get(0).atNanos();
      assertTrue(gap >= delay.toNanos(), "retried after " + gap + " ns, before the server's delay");
    }
  }

  @Test
  void overloadedWhoseDelayOutlastsTheDeadlineIsThrownAtOnce() throws Exception {
    try (var fake =
            new FakeTotpd(
                new Fail(
                    Status.Code.RESOURCE_EXHAUSTED,
                    "ERROR_REASON_OVERLOADED",
                    Duration.ofSeconds(30)));
        var c = client(fake, Duration.ofSeconds(2))) {
      var e = assertThrows(TotpdException.class, () -> c.verify("alice", "123456"));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code());
      assertEquals(ErrorReason.ERROR_REASON_OVERLOADED, e.reason());
      assertEquals(Optional.of(Duration.ofSeconds(30)), e.retryAfter());
      assertEquals(1, fake.received().size());
    }
  }

  @Test
  void rateLimitedIsNotRetriedAndCarriesTheServersDelay() throws Exception {
    try (var fake =
            new FakeTotpd(
                new Fail(
                    Status.Code.RESOURCE_EXHAUSTED,
                    "ERROR_REASON_RATE_LIMITED",
                    Duration.ofMillis(10)));
        var c = client(fake)) {
      var e = assertThrows(TotpdException.class, () -> c.verify("alice", "123456"));
      assertEquals(ErrorReason.ERROR_REASON_RATE_LIMITED, e.reason());
      assertEquals(Optional.of(Duration.ofMillis(10)), e.retryAfter());
      assertEquals(1, fake.received().size());
    }
  }

  @Test
  void resourceExhaustedWithoutATotpdReasonIsNotRetried() throws Exception {
    try (var fake = new FakeTotpd(Fail.of(Status.Code.RESOURCE_EXHAUSTED, null));
        var c = client(fake)) {
      var e = assertThrows(TotpdException.class, () -> c.enroll("alice", "Pixel 8"));
      assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, e.reason());
      assertEquals(Optional.empty(), e.retryAfter());
      assertEquals(1, fake.received().size());
    }
  }

  @Test
  void deadlineExceededAndRequestIdReusedAreTypedAndNotRetried() throws Exception {
    for (Fail f :
        List.of(
            Fail.of(Status.Code.DEADLINE_EXCEEDED, "ERROR_REASON_DEADLINE_EXCEEDED"),
            Fail.of(Status.Code.INVALID_ARGUMENT, "ERROR_REASON_REQUEST_ID_REUSED"))) {
      try (var fake = new FakeTotpd(f);
          var c = client(fake)) {
        var e = assertThrows(TotpdException.class, () -> c.disable("alice", "f-1", "123456"));
        assertEquals(f.code(), e.code());
        assertEquals(ErrorReason.valueOf(f.reason()), e.reason());
        assertEquals(1, fake.received().size());
      }
    }
  }

  @Test
  void verifyRetriesUnavailableLikeBefore() throws Exception {
    try (var fake = new FakeTotpd(FakeTotpd.UNAVAILABLE);
        var c = client(fake)) {
      assertTrue(c.verify("alice", "123456").isValid());
      assertEquals(
          List.of("Verify", "Verify"), fake.received().stream().map(Received::method).toList());
    }
  }

  @Test
  void unlockRequiredReachesTheOutcome() throws Exception {
    try (var fake = new FakeTotpd();
        var c = client(fake)) {
      fake.outcome(
          dev.totpd.v1.VerifyOutcome.newBuilder()
              .setResult(dev.totpd.v1.VerifyResult.VERIFY_RESULT_LOCKED)
              .setFactorId("f-1")
              .setUnlockRequired(true)
              .build());
      VerifyOutcome locked = c.verify("alice", "123456");
      assertEquals(VerifyResult.LOCKED, locked.result());
      assertTrue(locked.unlockRequired());
      assertEquals(Duration.ZERO, locked.retryAfter());
      fake.outcome(
          dev.totpd.v1.VerifyOutcome.newBuilder()
              .setResult(dev.totpd.v1.VerifyResult.VERIFY_RESULT_LOCKED)
              .setRetryAfterSeconds(60)
              .build());
      VerifyOutcome waiting = c.verify("alice", "123456");
      assertEquals(false, waiting.unlockRequired());
      assertEquals(Duration.ofSeconds(60), waiting.retryAfter());
    }
  }
}
