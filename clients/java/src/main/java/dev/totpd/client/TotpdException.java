package dev.totpd.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.ItemError;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;

/**
 * An error returned by totpd: the gRPC status code plus the machine-readable {@link ErrorReason}
 * and the request field at fault, decoded from the {@code google.rpc.ErrorInfo} in the status
 * details, and the wait the server asked for in a {@code google.rpc.RetryInfo} detail. A wrong or
 * reused code is never an exception: see {@link VerifyOutcome}.
 *
 * <p>A refused identity is one of its subclasses, never retried: {@link UnauthenticatedException},
 * {@link PermissionDeniedException}, {@link TenantRequiredException}.
 */
public class TotpdException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The ErrorInfo domain of totpd's own errors. */
  public static final String DOMAIN = "totpd.v1";

  private final Status.Code code;
  private final ErrorReason reason;
  private final String field;
  private final transient Map<String, String> metadata;
  private final Duration retryAfter;

  TotpdException(
      Status.Code code,
      ErrorReason reason,
      String field,
      Map<String, String> metadata,
      String message,
      Throwable cause) {
    this(code, reason, field, metadata, message, cause, null);
  }

  TotpdException(
      Status.Code code,
      ErrorReason reason,
      String field,
      Map<String, String> metadata,
      String message,
      Throwable cause,
      Duration retryAfter) {
    super(code + " " + reason + ": " + message, cause);
    this.code = code;
    this.reason = reason;
    this.field = field;
    this.metadata = Map.copyOf(metadata);
    this.retryAfter = retryAfter;
  }

  /** The gRPC status code (INVALID_ARGUMENT, NOT_FOUND, ...). */
  public Status.Code code() {
    return code;
  }

  /**
   * The totpd error reason; {@link ErrorReason#ERROR_REASON_UNSPECIFIED} when the status carried no
   * totpd ErrorInfo (for example a transport failure).
   */
  public ErrorReason reason() {
    return reason;
  }

  /** The request field at fault, or the empty string. */
  public String field() {
    return field;
  }

  /** All ErrorInfo metadata. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /**
   * The wait the server asked for before another attempt, from a {@code google.rpc.RetryInfo}
   * detail (OVERLOADED, RATE_LIMITED); empty when the status carried none.
   */
  public Optional<Duration> retryAfter() {
    return Optional.ofNullable(retryAfter);
  }

  /** Decodes a failed call. Works for any throwable carrying a gRPC status. */
  public static TotpdException fromThrowable(Throwable t) {
    Status status = Status.fromThrowable(t);
    ErrorReason reason = ErrorReason.ERROR_REASON_UNSPECIFIED;
    Map<String, String> metadata = Map.of();
    Duration retryAfter = null;
    boolean foundInfo = false;
    com.google.rpc.Status rich = StatusProto.fromThrowable(t);
    if (rich != null) {
      for (Any detail : rich.getDetailsList()) {
        try {
          if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
            Duration delay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
            retryAfter = delay.isNegative() ? Duration.ZERO : delay;
          } else if (!foundInfo && detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            if (DOMAIN.equals(info.getDomain())) {
              reason = parseReason(info.getReason());
              metadata = info.getMetadataMap();
              foundInfo = true;
            }
          }
        } catch (InvalidProtocolBufferException e) {
          // A malformed detail is ignored: the reason stays unspecified, no delay.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return of(
        status.getCode(),
        reason,
        metadata.getOrDefault("field", ""),
        metadata,
        message,
        t,
        retryAfter);
  }

  /** A TotpdException, or the subclass of its kind. */
  static TotpdException of(
      Status.Code code,
      ErrorReason reason,
      String field,
      Map<String, String> metadata,
      String message,
      Throwable cause,
      Duration retryAfter) {
    if (code == Status.Code.UNAUTHENTICATED) {
      return new UnauthenticatedException(
          code, reason, field, metadata, message, cause, retryAfter);
    }
    if (code == Status.Code.PERMISSION_DENIED) {
      return new PermissionDeniedException(
          code, reason, field, metadata, message, cause, retryAfter);
    }
    if (reason == ErrorReason.ERROR_REASON_TENANT_REQUIRED) {
      return new TenantRequiredException(code, reason, field, metadata, message, cause, retryAfter);
    }
    return new TotpdException(code, reason, field, metadata, message, cause, retryAfter);
  }

  static TotpdException fromItemError(ItemError e) {
    Status.Code code = Status.fromCodeValue(e.getCode()).getCode();
    Map<String, String> md = e.getField().isEmpty() ? Map.of() : Map.of("field", e.getField());
    ErrorReason reason =
        e.getReason() == ErrorReason.UNRECOGNIZED
            ? ErrorReason.ERROR_REASON_UNSPECIFIED
            : e.getReason();
    return of(code, reason, e.getField(), md, e.getMessage(), null, null);
  }

  private static ErrorReason parseReason(String name) {
    try {
      return ErrorReason.valueOf(name);
    } catch (IllegalArgumentException e) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
  }

  /**
   * Whether no work was done, so another attempt is safe and may succeed. UNAVAILABLE: the server
   * or its database was unreachable (or the response was lost: a mutating call's request id makes
   * the retry return the first result). OVERLOADED: refused before any work. RATE_LIMITED is
   * deliberately not retried: the caller must stop, not wait and guess again.
   */
  boolean isRetryable() {
    return code == Status.Code.UNAVAILABLE
        || (code == Status.Code.RESOURCE_EXHAUSTED
            && reason == ErrorReason.ERROR_REASON_OVERLOADED);
  }

  /**
   * The retry policy of the calls that act on every attempt and carry no request id
   * (generateRecoveryCodes, verifyRecoveryCode, resync): only OVERLOADED, refused before any work.
   * UNAVAILABLE, even with STORE_UNAVAILABLE, may follow a commit whose response (or the database's
   * acknowledgement) was lost: a retry would answer REPLAYED for the recovery code just used,
   * burning it, consume a resync's steps again, count another failure or replace the set just made.
   */
  boolean wasRefusedBeforeWork() {
    return code == Status.Code.RESOURCE_EXHAUSTED && reason == ErrorReason.ERROR_REASON_OVERLOADED;
  }
}
