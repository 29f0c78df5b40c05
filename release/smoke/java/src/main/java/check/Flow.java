package check;

import dev.totpd.client.Confirmation;
import dev.totpd.client.Enrollment;
import dev.totpd.client.Factor;
import dev.totpd.client.TotpdClient;
import dev.totpd.client.VerifyResult;
import java.nio.ByteBuffer;
import java.util.UUID;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Enroll -> ConfirmEnrollment -> Verify through the released jar, resolved by Maven from a
 * file-based repository. The codes come from the JDK's HMAC-SHA1 (RFC 6238), not from the client.
 */
public final class Flow {
  private Flow() {}

  static String totp(String secretBase32, long atSeconds, int digits, int period)
      throws Exception {
    String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    ByteBuffer key = ByteBuffer.allocate(secretBase32.length() * 5 / 8);
    int buffer = 0;
    int bits = 0;
    for (char c : secretBase32.toCharArray()) {
      buffer = (buffer << 5) | alphabet.indexOf(c);
      bits += 5;
      if (bits >= 8) {
        key.put((byte) (buffer >> (bits - 8)));
        bits -= 8;
      }
    }
    Mac mac = Mac.getInstance("HmacSHA1");
    mac.init(new SecretKeySpec(key.array(), "HmacSHA1"));
    byte[] h = mac.doFinal(ByteBuffer.allocate(8).putLong(atSeconds / period).array());
    int offset = h[h.length - 1] & 0x0f;
    int number = ByteBuffer.wrap(h, offset, 4).getInt() & 0x7fffffff;
    return String.format("%0" + digits + "d", number % (int) Math.pow(10, digits));
  }

  static void expect(String what, VerifyResult got, VerifyResult want) {
    if (got != want) {
      throw new AssertionError(what + ": got " + got + ", want " + want);
    }
  }

  public static void main(String[] args) throws Exception {
    String account = "release-check-java-" + UUID.randomUUID();
    try (TotpdClient totpd = TotpdClient.builder(args[0]).plaintext().build()) {
      Enrollment e = totpd.enroll(account, "release check");
      Factor f = e.factor();
      long now = System.currentTimeMillis() / 1000;
      String code = totp(e.secretBase32(), now, f.digits(), f.periodSeconds());
      Confirmation c = totpd.confirm(account, f.factorId(), code);
      expect("confirm", c.outcome().result(), VerifyResult.VALID);
      expect("verify same code", totpd.verify(account, code).result(), VerifyResult.REPLAYED);
      String next = totp(e.secretBase32(), now + f.periodSeconds(), f.digits(), f.periodSeconds());
      expect("verify next code", totpd.verify(account, next).result(), VerifyResult.VALID);
    }
    String jar = TotpdClient.class.getProtectionDomain().getCodeSource().getLocation().getPath();
    System.out.println("java: dev.totpd.client from " + jar + ":");
    System.out.println(
        "  enroll -> confirm VALID -> verify same code REPLAYED -> verify next code VALID");
  }
}
