package dev.totpd.client;

import dev.totpd.v1.ErrorReason;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Optional;

/**
 * One audited call: who did what to which account, and how it ended. Never a secret, a code, an
 * otpauth URI or a token.
 *
 * @param eventId server-assigned, increasing identifier
 * @param time when the call was decided (microsecond precision)
 * @param caller the caller's name, or "local" for the implicit caller
 * @param tenant the tenant the call acted in; empty for a call denied before it was known
 * @param method the RPC, e.g. "Verify"
 * @param accountId the account named by the call (empty if none)
 * @param factorId the factor acted on or matched (empty if none)
 * @param verifyResult the verdict, for a call that decided a code
 * @param errorReason the reason of a failed call; ERROR_REASON_UNSPECIFIED for a success
 * @param statusCode the gRPC code's name: "OK", "PERMISSION_DENIED"...
 * @param stepOffset for VALID: the matched step minus the server's
 * @param requestId the call's request id, if it had one
 * @param peer the address the call came from
 */
public record AuditEvent(
    long eventId,
    Instant time,
    String caller,
    String tenant,
    String method,
    String accountId,
    String factorId,
    Optional<VerifyResult> verifyResult,
    ErrorReason errorReason,
    String statusCode,
    int stepOffset,
    String requestId,
    String peer) {

  static AuditEvent fromProto(dev.totpd.v1.AuditEvent e) {
    Optional<VerifyResult> result =
        e.getVerifyResult() == dev.totpd.v1.VerifyResult.VERIFY_RESULT_UNSPECIFIED
            ? Optional.empty()
            : Optional.of(VerifyResult.fromProto(e.getVerifyResult()));
    ErrorReason reason =
        e.getErrorReason() == ErrorReason.UNRECOGNIZED
            ? ErrorReason.ERROR_REASON_UNSPECIFIED
            : e.getErrorReason();
    return new AuditEvent(
        e.getEventId(),
        Instant.EPOCH.plus(e.getTimeUnixMicros(), ChronoUnit.MICROS),
        e.getCaller(),
        e.getTenant(),
        e.getMethod(),
        e.getAccountId(),
        e.getFactorId(),
        result,
        reason,
        e.getStatusCode(),
        e.getStepOffset(),
        e.getRequestId(),
        e.getPeer());
  }
}
