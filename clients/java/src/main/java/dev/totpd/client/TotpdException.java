package dev.totpd.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.ItemError;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.Map;

/**
 * An error returned by totpd: the gRPC status code plus the machine-readable {@link ErrorReason}
 * and the request field at fault, decoded from the {@code google.rpc.ErrorInfo} in the status
 * details. A wrong or reused code is never an exception: see {@link VerifyOutcome}.
 */
public final class TotpdException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The ErrorInfo domain of totpd's own errors. */
  public static final String DOMAIN = "totpd.v1";

  private final Status.Code code;
  private final ErrorReason reason;
  private final String field;
  private final transient Map<String, String> metadata;

  TotpdException(
      Status.Code code,
      ErrorReason reason,
      String field,
      Map<String, String> metadata,
      String message,
      Throwable cause) {
    super(code + " " + reason + ": " + message, cause);
    this.code = code;
    this.reason = reason;
    this.field = field;
    this.metadata = Map.copyOf(metadata);
  }

  /** The gRPC status code (INVALID_ARGUMENT, NOT_FOUND, ...). */
  public Status.Code code() {
    return code;
  }

  /**
   * The totpd error reason; {@link ErrorReason#ERROR_REASON_UNSPECIFIED} when the status carried
   * no totpd ErrorInfo (for example a transport failure).
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

  /** Decodes a failed call. Works for any throwable carrying a gRPC status. */
  public static TotpdException fromThrowable(Throwable t) {
    Status status = Status.fromThrowable(t);
    ErrorReason reason = ErrorReason.ERROR_REASON_UNSPECIFIED;
    Map<String, String> metadata = Map.of();
    com.google.rpc.Status rich = StatusProto.fromThrowable(t);
    if (rich != null) {
      for (Any detail : rich.getDetailsList()) {
        if (!detail.is(ErrorInfo.class)) {
          continue;
        }
        try {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          if (!DOMAIN.equals(info.getDomain())) {
            continue;
          }
          reason = parseReason(info.getReason());
          metadata = info.getMetadataMap();
          break;
        } catch (InvalidProtocolBufferException e) {
          // A malformed detail leaves the reason unspecified.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return new TotpdException(
        status.getCode(), reason, metadata.getOrDefault("field", ""), metadata, message, t);
  }

  static TotpdException fromItemError(ItemError e) {
    Status.Code code = Status.fromCodeValue(e.getCode()).getCode();
    Map<String, String> md = e.getField().isEmpty() ? Map.of() : Map.of("field", e.getField());
    ErrorReason reason =
        e.getReason() == ErrorReason.UNRECOGNIZED ? ErrorReason.ERROR_REASON_UNSPECIFIED : e.getReason();
    return new TotpdException(code, reason, e.getField(), md, e.getMessage(), null);
  }

  private static ErrorReason parseReason(String name) {
    try {
      return ErrorReason.valueOf(name);
    } catch (IllegalArgumentException e) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
  }

  static boolean isUnavailable(Throwable t) {
    return t instanceof StatusRuntimeException
        && ((StatusRuntimeException) t).getStatus().getCode() == Status.Code.UNAVAILABLE;
  }
}
