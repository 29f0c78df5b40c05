package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.eatthepath.otp.TimeBasedOneTimePasswordGenerator;
import dev.totpd.v1.Algorithm;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.FactorState;
import io.grpc.Status;
import java.security.InvalidKeyException;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import javax.crypto.spec.SecretKeySpec;
import org.apache.commons.codec.binary.Base32;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The whole flow against a real totpd; codes come from java-otp, not from our code. */
class TotpdClientTest {
  private static TotpdServer server;
  private static TotpdClient client;

  @BeforeAll
  static void start() throws Exception {
    server = TotpdServer.start();
    client =
        TotpdClient.builder(server.target).plaintext().deadline(Duration.ofSeconds(10)).build();
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

  /** An account id no other test (or earlier run) uses. */
  private static String account(String name) {
    return "java-" + name + "-" + UUID.randomUUID();
  }

  /** The code java-otp computes for {@code secret} at {@code at}. */
  private static String code(Enrollment e, Instant at) throws InvalidKeyException {
    Factor f = e.factor();
    String hmac =
        switch (f.algorithm()) {
          case ALGORITHM_SHA256 -> TimeBasedOneTimePasswordGenerator.TOTP_ALGORITHM_HMAC_SHA256;
          case ALGORITHM_SHA512 -> TimeBasedOneTimePasswordGenerator.TOTP_ALGORITHM_HMAC_SHA512;
          default -> TimeBasedOneTimePasswordGenerator.TOTP_ALGORITHM_HMAC_SHA1;
        };
    var gen =
        new TimeBasedOneTimePasswordGenerator(
            Duration.ofSeconds(f.periodSeconds()), f.digits(), hmac);
    var key = new SecretKeySpec(new Base32().decode(e.secretBase32()), hmac);
    return gen.generateOneTimePasswordString(key, at);
  }

  private static Instant nextStep(Enrollment e) {
    return Instant.now().plusSeconds(e.factor().periodSeconds());
  }

  /** Enrolls and confirms with the current code; the next step's code is still unused. */
  private static Enrollment enrollActive(String accountId) throws InvalidKeyException {
    Enrollment e = client.enroll(accountId, "Pixel 8");
    Confirmation c = client.confirm(accountId, e.factor().factorId(), code(e, Instant.now()));
    assertEquals(VerifyResult.VALID, c.outcome().result(), "confirm: " + c.outcome());
    assertEquals(FactorState.FACTOR_STATE_ACTIVE, c.factor().state());
    return e;
  }

  @Test
  void enrollConfirmVerifyReplayDisable() throws Exception {
    String alice = account("alice");
    Enrollment e = client.enroll(alice, "Pixel 8");
    Factor f = e.factor();
    assertEquals(FactorState.FACTOR_STATE_PENDING, f.state());
    assertEquals(alice, f.accountId());
    assertEquals("Pixel 8", f.label());
    assertEquals(Algorithm.ALGORITHM_SHA1, f.algorithm());
    assertEquals(6, f.digits());
    assertEquals(30, f.periodSeconds());
    assertTrue(e.otpauthUri().startsWith("otpauth://totp/"), e.otpauthUri());
    assertTrue(e.otpauthUri().contains("secret=" + e.secretBase32()));
    assertTrue(e.qrPng().length > 8 && e.qrPng()[1] == 'P' && e.qrPng()[2] == 'N');
    assertTrue(e.qrSvg().contains("<svg"));

    Confirmation c = client.confirm(alice, f.factorId(), code(e, Instant.now()));
    assertEquals(VerifyResult.VALID, c.outcome().result(), "confirm: " + c.outcome());
    assertEquals(FactorState.FACTOR_STATE_ACTIVE, c.factor().state());
    assertTrue(c.factor().confirmedAt().isPresent());

    // The confirmation consumed the current step; the next step's code is in the window.
    String next = code(e, nextStep(e));
    VerifyOutcome v = client.verify(alice, next);
    assertEquals(VerifyResult.VALID, v.result(), "verify: " + v);
    assertEquals(f.factorId(), v.factorId());
    assertTrue(Set.of(0, 1).contains(v.stepOffset()), "step offset " + v.stepOffset());

    VerifyOutcome again = client.verify(alice, next);
    assertEquals(VerifyResult.REPLAYED, again.result(), "replay: " + again);
    assertFalse(again.isValid());

    Factor got = client.getFactor(alice, f.factorId());
    assertEquals(FactorState.FACTOR_STATE_ACTIVE, got.state());
    assertTrue(got.lastUsedAt().isPresent());
    List<Factor> listed = client.listFactors(alice, false);
    assertEquals(1, listed.size());
    assertEquals(f.factorId(), listed.get(0).factorId());

    // Admin path: disable without a code.
    DisableResult d = client.forceDisable(alice, f.factorId());
    assertEquals(VerifyResult.VALID, d.outcome().result());
    assertEquals(1, d.factors().size());
    assertEquals(FactorState.FACTOR_STATE_DISABLED, d.factors().get(0).state());
    assertEquals(FactorState.FACTOR_STATE_DISABLED, client.getFactor(alice, f.factorId()).state());
    assertTrue(client.listFactors(alice, false).isEmpty());
    assertEquals(1, client.listFactors(alice, true).size());
  }

  @Test
  void disableWithCurrentCode() throws Exception {
    String carol = account("carol");
    Enrollment e = enrollActive(carol);
    DisableResult d = client.disable(carol, e.factor().factorId(), code(e, nextStep(e)));
    assertEquals(VerifyResult.VALID, d.outcome().result(), "disable: " + d.outcome());
    assertEquals(
        List.of(e.factor().factorId()), d.factors().stream().map(Factor::factorId).toList());
    assertEquals(FactorState.FACTOR_STATE_DISABLED, d.factors().get(0).state());
  }

  @Test
  void batchVerifyAnswersEveryItemInOrder() throws Exception {
    String bob = account("bob");
    Enrollment e = enrollActive(bob);
    String next = code(e, nextStep(e));
    String missing = account("nobody");
    List<BatchResult> results;
    try {
      results =
          client.batchVerify(
              List.of(
                  new BatchItem(bob, next),
                  new BatchItem(bob, next, e.factor().factorId()),
                  new BatchItem(bob, "12a456"),
                  new BatchItem(missing, "123456")));
    } catch (TotpdException ex) {
      Assumptions.assumeFalse(
          ex.code() == Status.Code.UNIMPLEMENTED, "server does not implement BatchVerify yet");
      throw ex;
    }
    assertEquals(4, results.size());
    assertEquals(VerifyResult.VALID, results.get(0).outcome().orElseThrow().result());
    assertEquals(e.factor().factorId(), results.get(0).outcome().orElseThrow().factorId());
    assertEquals(VerifyResult.REPLAYED, results.get(1).outcome().orElseThrow().result());
    TotpdException malformed = results.get(2).error().orElseThrow();
    assertEquals(Status.Code.INVALID_ARGUMENT, malformed.code());
    assertEquals(ErrorReason.ERROR_REASON_MALFORMED_CODE, malformed.reason());
    TotpdException unknown = results.get(3).error().orElseThrow();
    assertEquals(Status.Code.NOT_FOUND, unknown.code());
    assertEquals(ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND, unknown.reason());
  }

  @Test
  void malformedCodeIsATypedError() throws Exception {
    String dave = account("dave");
    enrollActive(dave);
    TotpdException ex = assertThrows(TotpdException.class, () -> client.verify(dave, "12a456"));
    assertEquals(Status.Code.INVALID_ARGUMENT, ex.code());
    assertEquals(ErrorReason.ERROR_REASON_MALFORMED_CODE, ex.reason());
    assertEquals("code", ex.field());
    assertFalse(ex.getMessage().contains("12a456"), "the code must not be echoed");
  }

  @Test
  void unknownFactorIsNotFound() {
    TotpdException ex =
        assertThrows(
            TotpdException.class,
            () -> client.getFactor(account("erin"), UUID.randomUUID().toString()));
    assertEquals(Status.Code.NOT_FOUND, ex.code());
    assertNotEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, ex.reason());
  }

  @Test
  void unreachableServerIsRetriedThenUnavailable() {
    // A port nothing listens on: every attempt is UNAVAILABLE, retried, then reported.
    try (TotpdClient dead =
        TotpdClient.builder("127.0.0.1:1")
            .plaintext()
            .maxAttempts(3)
            .backoff(Duration.ofMillis(20), Duration.ofMillis(40))
            .deadline(Duration.ofSeconds(5))
            .build()) {
      long t0 = System.nanoTime();
      TotpdException ex = assertThrows(TotpdException.class, () -> dead.verify("x", "123456"));
      assertEquals(Status.Code.UNAVAILABLE, ex.code());
      assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, ex.reason());
      assertTrue(System.nanoTime() - t0 >= Duration.ofMillis(20).toNanos(), "no backoff happened");
    }
  }
}
