package dev.totpd.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.totpd.v1.ErrorReason;
import dev.totpd.v1.ItemError;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/** Decoding of google.rpc.Status details, without a server. */
class TotpdExceptionTest {
  private static com.google.rpc.Status rich(String domain, String reason, String field) {
    return com.google.rpc.Status.newBuilder()
        .setCode(Code.INVALID_ARGUMENT_VALUE)
        .setMessage("code must be 6 ASCII digits")
        .addDetails(
            Any.pack(
                ErrorInfo.newBuilder()
                    .setDomain(domain)
                    .setReason(reason)
                    .putMetadata("field", field)
                    .build()))
        .build();
  }

  @Test
  void decodesReasonAndField() {
    var e =
        TotpdException.fromThrowable(
            StatusProto.toStatusRuntimeException(
                rich("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code")));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertEquals(ErrorReason.ERROR_REASON_MALFORMED_CODE, e.reason());
    assertEquals("code", e.field());
    assertEquals("code", e.metadata().get("field"));
  }

  @Test
  void ignoresForeignDomainsAndUnknownReasons() {
    var foreign =
        TotpdException.fromThrowable(
            StatusProto.toStatusRuntimeException(
                rich("example.com", "ERROR_REASON_MALFORMED_CODE", "x")));
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, foreign.reason());
    var future =
        TotpdException.fromThrowable(
            StatusProto.toStatusRuntimeException(
                rich("totpd.v1", "ERROR_REASON_FROM_THE_FUTURE", "x")));
    assertEquals(Status.Code.INVALID_ARGUMENT, future.code());
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, future.reason());
  }

  @Test
  void plainStatusHasNoReason() {
    var e =
        TotpdException.fromThrowable(
            Status.UNAVAILABLE.withDescription("down").asRuntimeException());
    assertEquals(Status.Code.UNAVAILABLE, e.code());
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, e.reason());
    assertEquals("", e.field());
  }

  @Test
  void decodesBatchItemErrors() {
    var e =
        TotpdException.fromItemError(
            ItemError.newBuilder()
                .setCode(Code.NOT_FOUND_VALUE)
                .setReason(ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND)
                .setField("account_id")
                .setMessage("no such account")
                .build());
    assertEquals(Status.Code.NOT_FOUND, e.code());
    assertEquals(ErrorReason.ERROR_REASON_ACCOUNT_NOT_FOUND, e.reason());
    assertEquals("account_id", e.field());
  }

  @Test
  void decodesTheNewReasons() {
    for (ErrorReason r :
        new ErrorReason[] {
          ErrorReason.ERROR_REASON_DEADLINE_EXCEEDED,
          ErrorReason.ERROR_REASON_RATE_LIMITED,
          ErrorReason.ERROR_REASON_REQUEST_ID_REUSED
        }) {
      var e =
          TotpdException.fromThrowable(
              StatusProto.toStatusRuntimeException(rich("totpd.v1", r.name(), "request_id")));
      assertEquals(r, e.reason());
    }
  }

  @Test
  void exposesTheRetryInfoDelayBesideTheReason() {
    var st =
        com.google.rpc.Status.newBuilder()
            .setCode(Code.RESOURCE_EXHAUSTED_VALUE)
            .setMessage("slow down")
            .addDetails(
                Any.pack(
                    ErrorInfo.newBuilder()
                        .setDomain("totpd.v1")
                        .setReason("ERROR_REASON_RATE_LIMITED")
                        .build()))
            .addDetails(
                Any.pack(
                    RetryInfo.newBuilder()
                        .setRetryDelay(
                            com.google.protobuf.Duration.newBuilder()
                                .setSeconds(1)
                                .setNanos(500_000_000))
                        .build()))
            .build();
    var e = TotpdException.fromThrowable(StatusProto.toStatusRuntimeException(st));
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code());
    assertEquals(ErrorReason.ERROR_REASON_RATE_LIMITED, e.reason());
    assertEquals(Optional.of(Duration.ofMillis(1500)), e.retryAfter());
  }

  @Test
  void noRetryInfoMeansNoRetryAfter() {
    var e =
        TotpdException.fromThrowable(
            StatusProto.toStatusRuntimeException(
                rich("totpd.v1", "ERROR_REASON_MALFORMED_CODE", "code")));
    assertEquals(Optional.empty(), e.retryAfter());
  }

  @Test
  void decodesUnlockRequired() {
    var locked =
        VerifyOutcome.fromProto(
            dev.totpd.v1.VerifyOutcome.newBuilder()
                .setResult(dev.totpd.v1.VerifyResult.VERIFY_RESULT_LOCKED)
                .setUnlockRequired(true)
                .build());
    assertEquals(VerifyResult.LOCKED, locked.result());
    assertTrue(locked.unlockRequired());
    assertFalse(
        VerifyOutcome.fromProto(dev.totpd.v1.VerifyOutcome.getDefaultInstance()).unlockRequired());
  }
}
