package dev.totpd.client;

import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.Map;

/**
 * UNAUTHENTICATED: no credential, or one the server does not know (reason
 * ERROR_REASON_UNAUTHENTICATED; a proxy's bare UNAUTHENTICATED too). Fix the token or the client
 * certificate; never retried.
 */
public final class UnauthenticatedException extends TotpdException {
  private static final long serialVersionUID = 1L;

  UnauthenticatedException(
      Status.Code code,
      ErrorReason reason,
      String field,
      Map<String, String> metadata,
      String message,
      Throwable cause,
      Duration retryAfter) {
    super(code, reason, field, metadata, message, cause, retryAfter);
  }
}
