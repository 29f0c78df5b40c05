package dev.totpd.client;

import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.Map;

/**
 * PERMISSION_DENIED: a known caller without the permission, or without the tenant it named. Nothing
 * was read or written; never retried.
 */
public final class PermissionDeniedException extends TotpdException {
  private static final long serialVersionUID = 1L;

  PermissionDeniedException(
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
