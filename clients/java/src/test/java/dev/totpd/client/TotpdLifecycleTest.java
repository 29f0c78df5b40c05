package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.totpd.client.FakeTotpd.Fail;
import dev.totpd.client.FakeTotpd.Received;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.GenerateRecoveryCodesRequest;
import dev.totpd.v1.ListFactorsRequest;
import dev.totpd.v1.ResyncRequest;
import dev.totpd.v1.UnlockRequest;
import dev.totpd.v1.VerifyRecoveryCodeRequest;
import io.grpc.Status;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/** The lifecycle calls against a scripted in-process server: fields, answers and retries. */
class TotpdLifecycleTest {
  private static TotpdClient client(FakeTotpd fake) {
    return TotpdClient.builder(fake.target())
        .plaintext()
        .deadline(Duration.ofSeconds(10))
        .backoff(Duration.ofMillis(1), Duration.ofMillis(2))
        .build();
  }

  /** The four lifecycle RPCs by name. */
  private static final Map<String, Consumer<TotpdClient>> CALLS =
      Map.of(
          "GenerateRecoveryCodes", c -> c.generateRecoveryCodes("alice"),
          "VerifyRecoveryCode", c -> c.verifyRecoveryCode("alice", "k7q2-9xmf-w4c8"),
          "Unlock", c -> c.unlock("alice", null),
          "Resync", c -> c.resync("alice", "f-1", "123456", "654321"));

  /** The only idempotent one; the others act on every attempt, without a request id. */
  private static final String IDEMPOTENT = "Unlock";

  private static final RecoveryCodesStatus STATUS =
      new RecoveryCodesStatus(9, 10, Optional.of(Instant.ofEpochSecond(1_700_000_000L)));

  @Test
  void callsSendTheirFieldsAndMapTheAnswers() throws Exception {
    try (var fake = new FakeTotpd();
        var c = client(fake)) {
      fake.outcome(
          dev.totpd.v1.VerifyOutcome.newBuilder()
              .setResult(dev.totpd.v1.VerifyResult.VERIFY_RESULT_VALID)
              .setStepOffset(10)
              .setAttemptsLeft(10)
              .build());
      RecoveryCodes rc = c.generateRecoveryCodes("alice");
      assertEquals(List.of("k7q2-9xmf-w4c8", "0abc-defg-hjkm"), rc.codes());
      assertEquals(
          new RecoveryCodesStatus(2, 2, Optional.of(Instant.ofEpochSecond(1_700_000_000L))),
          rc.status());
      assertFalse(rc.toString().contains("k7q2"), "toString shows the codes");

      RecoveryCodeVerdict v = c.verifyRecoveryCode("alice", "K7Q2 9XMF W4C8");
      assertTrue(v.outcome().isValid());
      assertEquals(10, v.outcome().attemptsLeft());
      assertEquals(STATUS, v.status());

      assertEquals(new UnlockResult(true, 12, 2, true), c.unlock("alice", "f-2"));

      ResyncResult r = c.resync("alice", "f-1", "123456", "654321");
      assertTrue(r.outcome().isValid());
      assertEquals(10, r.outcome().stepOffset());
      assertEquals(10, r.factor().driftSteps());
      assertEquals("f-1", r.factor().factorId());

      MfaStatus list = c.mfaStatus("alice", true);
      assertEquals(1, list.factors().size());
      assertEquals(-3, list.factors().get(0).driftSteps());
      assertEquals(STATUS, list.recoveryCodes());
      List<Factor> plain = c.listFactors("alice", false); // the existing method is unchanged
      assertEquals(-3, plain.get(0).driftSteps());

      assertEquals(
          List.of(
              GenerateRecoveryCodesRequest.newBuilder().setAccountId("alice").build(),
              VerifyRecoveryCodeRequest.newBuilder()
                  .setAccountId("alice")
                  .setCode("K7Q2 9XMF W4C8")
                  .build(),
              UnlockRequest.newBuilder().setAccountId("alice").setFactorId("f-2").build(),
              ResyncRequest.newBuilder()
                  .setAccountId("alice")
                  .setFactorId("f-1")
                  .setCode1("123456")
                  .setCode2("654321")
                  .build(),
              ListFactorsRequest.newBuilder()
                  .setAccountId("alice")
                  .setIncludeInactive(true)
                  .build(),
              ListFactorsRequest.newBuilder().setAccountId("alice").build()),
          fake.received().stream().map(Received::request).toList());
    }
  }

  /** UNAVAILABLE, bare or STORE_UNAVAILABLE, may follow a commit whose response was lost. */
  @Test
  void unavailableIsRetriedOnlyByUnlock() throws Exception {
    for (Fail f : List.of(new Fail(Status.Code.UNAVAILABLE, null, null), FakeTotpd.UNAVAILABLE)) {
      for (var call : CALLS.entrySet()) {
        try (var fake = new FakeTotpd(f, f);
            var c = client(fake)) {
          if (call.getKey().equals(IDEMPOTENT)) {
            call.getValue().accept(c);
            assertEquals(3, fake.received().size(), call.getKey());
          } else {
            var e = assertThrows(TotpdException.class, () -> call.getValue().accept(c));
            assertEquals(Status.Code.UNAVAILABLE, e.code(), call.getKey());
            assertEquals(1, fake.received().size(), call.getKey());
          }
        }
      }
    }
  }

  /** OVERLOADED is refused before any work: every lifecycle call retries it. */
  @Test
  void overloadedIsRetried() throws Exception {
    Fail overloaded = Fail.of(Status.Code.RESOURCE_EXHAUSTED, "ERROR_REASON_OVERLOADED");
    for (var call : CALLS.entrySet()) {
      try (var fake = new FakeTotpd(overloaded, overloaded);
          var c = client(fake)) {
        call.getValue().accept(c);
        assertEquals(
            List.of(call.getKey(), call.getKey(), call.getKey()),
            fake.received().stream().map(Received::method).toList());
      }
    }
  }

  @Test
  void errorsAreTypedAndNotRetried() throws Exception {
    List<Fail> fails =
        List.of(
            Fail.of(Status.Code.NOT_FOUND, "ERROR_REASON_ACCOUNT_NOT_FOUND"),
            Fail.of(Status.Code.INVALID_ARGUMENT, "ERROR_REASON_MALFORMED_CODE"),
            new Fail(
                Status.Code.RESOURCE_EXHAUSTED,
                "ERROR_REASON_RATE_LIMITED",
                Duration.ofSeconds(1)));
    for (Fail f : fails) {
      for (var call : CALLS.entrySet()) {
        try (var fake = new FakeTotpd(f);
            var c = client(fake)) {
          var e = assertThrows(TotpdException.class, () -> call.getValue().accept(c));
          assertEquals(f.code(), e.code(), call.getKey());
          assertEquals(ErrorReason.valueOf(f.reason()), e.reason(), call.getKey());
          assertEquals(1, fake.received().size(), call.getKey());
        }
      }
    }
    try (var fake =
            new FakeTotpd(
                Fail.of(Status.Code.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED"));
        var c = client(fake)) {
      assertThrows(PermissionDeniedException.class, () -> c.unlock("alice", ""));
    }
  }
}
