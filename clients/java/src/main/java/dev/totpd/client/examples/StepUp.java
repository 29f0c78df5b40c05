package dev.totpd.client.examples;

import dev.totpd.client.TotpdClient;
import dev.totpd.client.TotpdException;
import dev.totpd.client.VerifyOutcome;
import dev.totpd.v1.ErrorReason;

/**
 * A minimal sign-in step-up: verify the code a user typed and decide.
 *
 * <pre>
 * mvn -q compile exec:java -Dexec.mainClass=dev.totpd.client.examples.StepUp \
 *     -Dexec.args="127.0.0.1:50051 alice 123456"
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
      VerifyOutcome v = totpd.verify(args[1], args[2]);
      switch (v.result()) {
        case VALID -> System.out.println("step-up granted");
        case REPLAYED -> System.out.println("that code was already used: wait for the next one");
        case LOCKED ->
            System.out.println(
                v.unlockRequired()
                    ? "locked: ask support to unlock the account"
                    : "too many attempts: try again in " + v.retryAfter().toSeconds() + " s");
        default -> System.out.printf("wrong code, %d attempts left%n", v.attemptsLeft());
      }
      System.exit(v.isValid() ? 0 : 1);
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
      System.exit(1);
    }
  }
}
