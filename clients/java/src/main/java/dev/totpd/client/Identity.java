package dev.totpd.client;

import io.grpc.Metadata;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.Locale;

/** The caller's identity as call metadata: a bearer token and a tenant. */
final class Identity {
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> TENANT =
      Metadata.Key.of(TotpdClient.TENANT_HEADER, Metadata.ASCII_STRING_MARSHALLER);

  private Identity() {}

  /**
   * Checks a metadata value: printable ASCII without surrounding spaces. The message names the
   * option, never the value (a token must not reach a log).
   */
  static String checked(String value, String what) {
    boolean ok = value != null && !value.isEmpty() && value.strip().equals(value);
    for (int i = 0; ok && i < value.length(); i++) {
      char c = value.charAt(i);
      ok = c >= ' ' && c <= '~';
    }
    if (!ok) {
      throw new IllegalArgumentException(
          what + " must be non-empty printable ASCII without surrounding spaces");
    }
    return value;
  }

  /** The headers of every call, or null for none. */
  static Metadata headers(String token, String tenant) {
    if (token == null && tenant == null) {
      return null;
    }
    Metadata md = new Metadata();
    if (token != null) {
      md.put(AUTHORIZATION, "Bearer " + checked(token, "token"));
    }
    if (tenant != null) {
      md.put(TENANT, checked(tenant, "tenant"));
    }
    return md;
  }

  /** Whether a gRPC target (host:port, [v6]:port, dns:///, ipv4:, unix:) names this machine. */
  static boolean isLoopback(String target) {
    if (target.startsWith("unix:") || target.startsWith("unix-abstract:")) {
      return true;
    }
    for (String scheme : new String[] {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
      if (target.startsWith(scheme)) {
        target = target.substring(scheme.length());
        break;
      }
    }
    String host = target;
    if (target.startsWith("[")) {
      int end = target.indexOf(']');
      host = end < 0 ? target.substring(1) : target.substring(1, end);
    } else if (target.indexOf(':') >= 0 && target.indexOf(':') == target.lastIndexOf(':')) {
      host = target.substring(0, target.indexOf(':'));
    }
    if (host.toLowerCase(Locale.ROOT).equals("localhost")) {
      return true;
    }
    // Only IP literals are parsed (no name lookup): a name other than localhost is remote.
    if (!host.matches("[0-9.]+") && !host.contains(":")) {
      return false;
    }
    try {
      return InetAddress.getByName(host).isLoopbackAddress();
    } catch (UnknownHostException e) {
      return false;
    }
  }
}
