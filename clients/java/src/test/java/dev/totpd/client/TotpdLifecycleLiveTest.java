package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.eatthepath.otp.TimeBasedOneTimePasswordGenerator;
import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.security.InvalidKeyException;
import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.Locale;
import java.util.UUID;
import javax.crypto.spec.SecretKeySpec;
import org.apache.commons.codec.binary.Base32;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Recovery codes, unlock and resync against a real totpd; TOTP codes come from java-otp. */
class TotpdLifecycleLiveTest {
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

  private static String account(String name) {
    return "java-" + name + "-" + UUID.randomUUID();
  }

  /** The SHA1/6/30 code of the enrollment at {@code at}. */
  private static String code(Enrollment e, Instant at) throws InvalidKeyException {
    var gen = new TimeBasedOneTimePasswordGenerator(Duration.ofSeconds(30));
    var key = new SecretKeySpec(new Base32().decode(e.secretBase32()), gen.getAlgorithm());
    return gen.generateOneTimePasswordString(key, at);
  }

  private static Enrollment enrollActive(String accountId) throws InvalidKeyException {
    Enrollment e = client.enroll(accountId, "Pixel 8");
    Confirmation c = client.confirm(accountId, e.factor().factorId(), code(e, Instant.now()));
    assertEquals(VerifyResult.VALID, c.outcome().result(), "confirm: " + c.outcome());
    return e;
  }

  private static TotpdException assertError(Status.Code code, ErrorReason reason, Executable x) {
    TotpdException e = assertThrows(TotpdException.class, x);
    assertEquals(code, e.code());
    assertEquals(reason, e.reason());
    return e;
  }

  @Test
  void recoveryCodesVerifyOnceThenReplayed() throws Exception {
    String ivan = account("ivan");
    enrollActive(ivan);
    RecoveryCodes rc = client.generateRecoveryCodes(ivan);
    assertEquals(10, rc.codes().size());
    assertEquals(10, new HashSet<>(rc.codes()).size());
    rc.codes().forEach(c -> assertTrue(c.matches("[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}"), "format"));
    assertEquals(10, rc.status().remaining());
    assertEquals(10, rc.status().issued());
    Instant at = rc.status().generatedAt().orElseThrow();
    assertTrue(Duration.between(at, Instant.now()).abs().toMinutes() < 5, at.toString());

    RecoveryCodeVerdict v = client.verifyRecoveryCode(ivan, rc.codes().get(0));
    assertEquals(VerifyResult.VALID, v.outcome().result());
    assertEquals(9, v.status().remaining());
    v = client.verifyRecoveryCode(ivan, rc.codes().get(0));
    assertEquals(VerifyResult.REPLAYED, v.outcome().result());
    assertEquals(9, v.status().remaining());
    String typed = rc.codes().get(1).replace("-", "").toUpperCase(Locale.ROOT);
    v = client.verifyRecoveryCode(ivan, typed);
    assertEquals(VerifyResult.VALID, v.outcome().result());
    assertEquals(8, v.status().remaining());
    var malformed =
        assertError(
            Status.Code.INVALID_ARGUMENT,
            ErrorReason.ERROR_REASON_MALFORMED_CODE,
            () -> client.verifyRecoveryCode(ivan, "not-a-code!"));
    assertFalse(malformed.getMessage().contains("not-a-code"), "the code is echoed");

    MfaStatus list = client.mfaStatus(ivan, false);
    assertEquals(1, list.factors().size());
    assertEquals(8, list.recoveryCodes().remaining());
    assertEquals(10, list.recoveryCodes().issued());

    client.generateRecoveryCodes(ivan);
    v = client.verifyRecoveryCode(ivan, rc.codes().get(2));
    assertEquals(VerifyResult.INVALID, v.outcome().result(), "a code of the replaced set");

    assertError(
        Status.Code.NOT_FOUND,
        ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND,
        () -> client.generateRecoveryCodes(account("judy")));
  }

  @Test
  void unlockOpensAnAccountLockedByWrongCodes() throws Exception {
    String kim = account("kim");
    Enrollment e = enrollActive(kim);
    String wrong = code(e, Instant.now().minusSeconds(3600));
    VerifyOutcome locked = null;
    // Backoff starts after the 3rd failure, the lock after the 10th.
    for (int i = 0; i < 12 && locked == null; i++) {
      VerifyOutcome outcome = client.verify(kim, wrong);
      if (outcome.result() == VerifyResult.LOCKED) {
        locked = outcome;
      }
    }
    // Not "the next right code is LOCKED too": the backoff may end before that call
    // on a slow machine. What the unlock cleared is the server's own account.
    assertTrue(locked != null && !locked.retryAfter().isZero(), "not locked (in backoff)");
    String next = code(e, Instant.now().plusSeconds(30));

    UnlockResult u = client.unlock(kim, null);
    assertEquals(1, u.factorsCleared(), u.toString());
    assertTrue(u.consecutiveFailuresCleared() >= 3, u.toString());
    assertEquals(VerifyResult.VALID, client.verify(kim, next).result());
    assertError(
        Status.Code.NOT_FOUND,
        ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND,
        () -> client.unlock(account("nobody"), ""));
  }

  @Test
  void resyncMeasuresTheDriftOfAnAppFiveMinutesAhead() throws Exception {
    String leo = account("leo");
    Enrollment e = enrollActive(leo);
    String factorId = e.factor().factorId();
    Instant app = Instant.now().plusSeconds(300);
    String code1 = code(e, app);
    String code2 = code(e, app.plusSeconds(30));

    ResyncResult r = client.resync(leo, factorId, code1, code2);
    int drift = r.factor().driftSteps();
    assertEquals(VerifyResult.VALID, r.outcome().result(), r.toString());
    assertTrue(drift >= 9 && drift <= 12, "drift " + drift);
    assertEquals(drift, r.outcome().stepOffset());
    assertEquals(drift, client.getFactor(leo, factorId).driftSteps());
    VerifyOutcome later = client.verify(leo, code(e, app.plusSeconds(60)));
    assertEquals(VerifyResult.VALID, later.result());
    assertTrue(later.stepOffset() >= drift && later.stepOffset() <= drift + 2, later.toString());

    ResyncResult again = client.resync(leo, factorId, code1, code2);
    assertEquals(VerifyResult.REPLAYED, again.outcome().result());
    assertEquals(drift, again.factor().driftSteps());
    assertNotEquals(
        VerifyResult.VALID,
        client.verify(leo, code(e, Instant.now().minusSeconds(30))).result(),
        "a code of the server's clock, outside the drifted window");
    assertError(
        Status.Code.INVALID_ARGUMENT,
        ErrorReason.ERROR_REASON_MALFORMED_CODE,
        () -> client.resync(leo, factorId, "12a456", code2));
  }
}
