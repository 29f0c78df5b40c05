package dev.totpd.client.examples;

import dev.totpd.client.RecoveryCodeVerdict;
import dev.totpd.client.TotpdClient;
import dev.totpd.client.TotpdException;
import dev.totpd.client.VerifyOutcome;
import dev.totpd.v1.ErrorReason;

/**
 * A minimal sign-in step-up: verify the code a user typed and decide. Digits are the app's code;
 * anything else is taken for a recovery code.
 *
 * <pre>
 * mvn -q compile exec:java -Dexec.mainClass=dev.totpd.client.examples.StepUp \
 *     -Dexec.args="127.0.0.1:50051 alice 123456"
 * mvn -q compile exec:java -Dexec.mainClass=dev.totpd.client.examples.StepUp \
 *     -Dexec.args="127.0.0.1:50051 alice k7q2-9xmf-w4c8"
 * </pre>
 */
public final class StepUp {
  private StepUp() {}

  public static void main(String[] args) {
    if (args.length != 3) {
      System.err.println("usage: StepUp HOST:PORT ACCOUNT CODE");
      System.exit(2);
    }
    try (TotpdClient totpd = TotpdClient.builder(args[0]).plaintext().build()) {
      boolean ok =
          args[2].matches("[0-9]*")
              ? stepUp(totpd, args[1], args[2])
              : recover(totpd, args[1], args[2]);
      System.exit(ok ? 0 : 1);
    }
  }

  private static boolean stepUp(TotpdClient totpd, String accountId, String code) {
    try {
      VerifyOutcome v = totpd.verify(accountId, code);
      switch (v.result()) {
        case VALID -> System.out.println("step-up granted");
        case REPLAYED -> System.out.println("that code was already used: wait for the next one");
        case LOCKED -> System.out.println(locked(v));
        default -> System.out.printf("wrong code, %d attempts left%n", v.attemptsLeft());
      }
      return v.isValid();
    } catch (TotpdException e) {
      if (e.reason() == ErrorReason.ERROR_REASON_MALFORMED_CODE) {
        System.out.println("a code is digits only, nothing else");
      } else if (e.reason() == ErrorReason.ERROR_REASON_RATE_LIMITED) {
        System.out.println(
            "too many failed codes from this service: pause "
                + e.retryAfter().map(d -> d.toSeconds() + " s").orElse("a while"));
      } else {
        System.out.println("cannot verify now (" + e.code() + ", " + e.reason() + ")");
      }
      return false;
    }
  }

  /** A recovery code, for a user without their phone: each works once. */
  private static boolean recover(TotpdClient totpd, String accountId, String code) {
    try {
      RecoveryCodeVerdict r = totpd.verifyRecoveryCode(accountId, code);
      VerifyOutcome v = r.outcome();
      switch (v.result()) {
        case VALID ->
            System.out.printf("step-up granted; %d recovery codes left%n", r.status().remaining());
        case REPLAYED -> System.out.println("that recovery code was already used");
        case LOCKED -> System.out.println(locked(v));
        default -> System.out.printf("wrong recovery code, %d attempts left%n", v.attemptsLeft());
      }
      return v.isValid();
    } catch (TotpdException e) {
      if (e.reason() == ErrorReason.ERROR_REASON_MALFORMED_CODE) {
        System.out.println("not a recovery code: 12 letters and digits, as printed");
      } else {
        System.out.println("cannot verify now (" + e.code() + ", " + e.reason() + ")");
      }
      return false;
    }
  }

  private static String locked(VerifyOutcome v) {
    return v.unlockRequired()
        ? "locked: sign in with a recovery code, or ask support to unlock the account"
        : "too many attempts: try again in " + v.retryAfter().toSeconds() + " s";
  }
}
