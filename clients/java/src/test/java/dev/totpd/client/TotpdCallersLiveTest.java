package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.totpd.v1.ErrorReason;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Against a real totpd with a callers file: allowed calls, and denied ones as typed exceptions. */
class TotpdCallersLiveTest {
  private static final String WRITER = "totpd_java-live-writer-0123456789abcdef";
  private static final String READER = "totpd_java-live-reader-0123456789abcdef";
  private static final String TWO_TENANTS = "totpd_java-live-two-tenants-0123456789";

  private static Path dir;
  private static TotpdServer server;

  private static String entry(String name, String token, String tenants, String permissions)
      throws Exception {
    byte[] digest =
        MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
    return String.join(
        "\n",
        "[[callers]]",
        "name = \"" + name + "\"",
        "token_sha256 = \"" + HexFormat.of().formatHex(digest) + "\"",
        "tenants = " + tenants,
        "permissions = " + permissions,
        "");
  }

  @BeforeAll
  static void start() throws Exception {
    dir = Files.createTempDirectory("totpd-java-callers-");
    Path file = dir.resolve("callers.toml");
    Files.writeString(
        file,
        entry("writer", WRITER, "[\"default\"]", "[\"enroll\", \"verify\", \"read\"]")
            + entry("reader", READER, "[\"default\"]", "[\"read\"]")
            + entry("two-tenants", TWO_TENANTS, "[\"default\", \"other\"]", "[\"read\"]"));
    server = TotpdServer.start(List.of("--callers-file", file.toString()));
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
    if (dir != null) {
      TotpdServer.deleteTree(dir);
    }
  }

  private static TotpdClient.Builder client() {
    return TotpdClient.builder(server.target).plaintext();
  }

  @Test
  void anAllowedCallerEnrollsAndReads() {
    try (var writer = client().token(WRITER).build();
        var two = client().token(TWO_TENANTS).tenant("default").build()) {
      Enrollment e = writer.enroll("java-live-callers", "phone");
      assertEquals("phone", writer.getFactor("java-live-callers", e.factor().factorId()).label());
      assertEquals(1, two.listFactors("java-live-callers", true).size());
    }
  }

  @Test
  void aReadOnlyCallerMayNotEnroll() {
    try (var reader = client().token(READER).maxAttempts(3).build()) {
      var e =
          assertThrows(
              PermissionDeniedException.class, () -> reader.enroll("java-live-callers-2", "p"));
      assertEquals(ErrorReason.ERROR_REASON_PERMISSION_DENIED, e.reason());
      assertFalse(e.getMessage().contains(READER));
    }
  }

  @Test
  void unlockIsAnOperatorsActionThatEnrollAndVerifyDoNotAllow() {
    try (var writer = client().token(WRITER).build()) {
      assertThrows(PermissionDeniedException.class, () -> writer.unlock("java-live-callers", null));
    }
  }

  @Test
  void anUnknownOrMissingTokenIsUnauthenticated() {
    try (var unknown = client().token("totpd_not-a-known-token-0000000000").build();
        var none = client().build()) {
      for (TotpdClient c : List.of(unknown, none)) {
        var e =
            assertThrows(
                UnauthenticatedException.class, () -> c.listFactors("java-live-callers", false));
        assertEquals(ErrorReason.ERROR_REASON_UNAUTHENTICATED, e.reason());
      }
    }
  }

  @Test
  void aCallerOfTwoTenantsMustNameOneItHolds() {
    try (var two = client().token(TWO_TENANTS).build();
        var elsewhere = client().token(READER).tenant("other").build()) {
      assertThrows(
          TenantRequiredException.class, () -> two.listFactors("java-live-callers", false));
      assertThrows(
          PermissionDeniedException.class, () -> elsewhere.listFactors("java-live-callers", false));
    }
  }
}
