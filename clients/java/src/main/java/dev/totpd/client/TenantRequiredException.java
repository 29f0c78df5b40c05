package dev.totpd.client;

import dev.totpd.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.Map;

/**
 * INVALID_ARGUMENT with reason ERROR_REASON_TENANT_REQUIRED: the caller holds several tenants and
 * named none; set {@link TotpdClient.Builder#tenant(String)}. Never retried.
 */
public final class TenantRequiredException extends TotpdException {
  private static final long serialVersionUID = 1L;

  TenantRequiredException(
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
