package dev.totpd.client;

import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.totpd.v1.AuditEvent;
import dev.totpd.v1.ConfirmEnrollmentRequest;
import dev.totpd.v1.ConfirmEnrollmentResponse;
import dev.totpd.v1.DisableRequest;
import dev.totpd.v1.DisableResponse;
import dev.totpd.v1.EnrollRequest;
import dev.totpd.v1.EnrollResponse;
import dev.totpd.v1.Factor;
import dev.totpd.v1.GenerateRecoveryCodesRequest;
import dev.totpd.v1.GenerateRecoveryCodesResponse;
import dev.totpd.v1.ListAuditEventsRequest;
import dev.totpd.v1.ListAuditEventsResponse;
import dev.totpd.v1.ListFactorsRequest;
import dev.totpd.v1.ListFactorsResponse;
import dev.totpd.v1.RecoveryCodesStatus;
import dev.totpd.v1.ResyncRequest;
import dev.totpd.v1.ResyncResponse;
import dev.totpd.v1.TotpServiceGrpc;
import dev.totpd.v1.UnlockRequest;
import dev.totpd.v1.UnlockResponse;
import dev.totpd.v1.VerifyOutcome;
import dev.totpd.v1.VerifyRecoveryCodeRequest;
import dev.totpd.v1.VerifyRecoveryCodeResponse;
import dev.totpd.v1.VerifyRequest;
import dev.totpd.v1.VerifyResponse;
import dev.totpd.v1.VerifyResult;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * An in-process TotpService that answers from a script and records what it received: for what a
 * real totpd cannot be made to do on demand (fail an attempt with UNAVAILABLE or OVERLOADED, attach
 * a google.rpc.RetryInfo).
 */
final class FakeTotpd extends TotpServiceGrpc.TotpServiceImplBase implements AutoCloseable {
  /**
   * One scripted failure: a status with a totpd ErrorInfo (unless reason is null) and a RetryInfo.
   */
  record Fail(Status.Code code, String reason, Duration retryAfter) {
    static Fail of(Status.Code code, String reason) {
      return new Fail(code, reason, null);
    }

    com.google.rpc.Status toStatus() {
      var st =
          com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage("scripted " + code);
      if (reason != null) {
        st.addDetails(
            Any.pack(ErrorInfo.newBuilder().setDomain("totpd.v1").setReason(reason).build()));
      }
      if (retryAfter != null) {
        st.addDetails(
            Any.pack(
                RetryInfo.newBuilder()
                    .setRetryDelay(
                        com.google.protobuf.Duration.newBuilder()
                            .setSeconds(retryAfter.getSeconds())
                            .setNanos(retryAfter.getNano()))
                    .build()));
      }
      return st.build();
    }
  }

  static final Fail UNAVAILABLE =
      Fail.of(Status.Code.UNAVAILABLE, "ERROR_REASON_STORE_UNAVAILABLE");

  /** One call: its RPC, request id, arrival time, headers and request. */
  record Received(String method, String requestId, long atNanos, Metadata headers, Object request) {
    /** The value of an ASCII header, or null. */
    String header(String name) {
      return headers.get(Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER));
    }
  }

  private static final Context.Key<Metadata> HEADERS = Context.key("headers");

  /** Puts each call's headers in its Context, for answer() to record. */
  private static final ServerInterceptor RECORD_HEADERS =
      new ServerInterceptor() {
        @Override
        public <Q, A> ServerCall.Listener<Q> interceptCall(
            ServerCall<Q, A> call, Metadata headers, ServerCallHandler<Q, A> next) {
          return Contexts.interceptCall(
              Context.current().withValue(HEADERS, headers), call, headers, next);
        }
      };

  /** The events ListAuditEvents pages through (offset tokens, 100 per page by default). */
  volatile List<AuditEvent> auditEvents = List.of();

  private final Deque<Fail> script = new ArrayDeque<>();
  private final List<Received> received = new ArrayList<>();
  private volatile VerifyOutcome outcome =
      VerifyOutcome.newBuilder().setResult(VerifyResult.VERIFY_RESULT_VALID).build();
  private final Server server;

  FakeTotpd(Fail... script) throws IOException {
    this.script.addAll(List.of(script));
    this.server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(ServerInterceptors.intercept(this, RECORD_HEADERS))
            .build()
            .start();
  }

  String target() {
    return "127.0.0.1:" + server.getPort();
  }

  synchronized List<Received> received() {
    return List.copyOf(received);
  }

  void outcome(VerifyOutcome o) {
    outcome = o;
  }

  private <T> void answer(
      String method, String requestId, StreamObserver<T> out, Supplier<T> reply) {
    answer(method, requestId, null, out, reply);
  }

  private <T> void answer(
      String method, String requestId, Object request, StreamObserver<T> out, Supplier<T> reply) {
    Fail fail;
    synchronized (this) {
      received.add(new Received(method, requestId, System.nanoTime(), HEADERS.get(), request));
      fail = script.poll();
    }
    if (fail != null) {
      out.onError(StatusProto.toStatusRuntimeException(fail.toStatus()));
      return;
    }
    out.onNext(reply.get());
    out.onCompleted();
  }

  private static Factor factor(String accountId, String factorId) {
    return Factor.newBuilder().setAccountId(accountId).setFactorId(factorId).build();
  }

  @Override
  public void enroll(EnrollRequest r, StreamObserver<EnrollResponse> out) {
    answer(
        "Enroll",
        r.getRequestId(),
        out,
        () -> EnrollResponse.newBuilder().setFactor(factor(r.getAccountId(), "f-1")).build());
  }

  @Override
  public void confirmEnrollment(
      ConfirmEnrollmentRequest r, StreamObserver<ConfirmEnrollmentResponse> out) {
    answer(
        "ConfirmEnrollment",
        r.getRequestId(),
        out,
        () ->
            ConfirmEnrollmentResponse.newBuilder()
                .setOutcome(outcome)
                .setFactor(factor(r.getAccountId(), r.getFactorId()))
                .build());
  }

  @Override
  public void verify(VerifyRequest r, StreamObserver<VerifyResponse> out) {
    answer("Verify", "", out, () -> VerifyResponse.newBuilder().setOutcome(outcome).build());
  }

  @Override
  public void disable(DisableRequest r, StreamObserver<DisableResponse> out) {
    answer(
        "Disable",
        r.getRequestId(),
        out,
        () -> DisableResponse.newBuilder().setOutcome(outcome).build());
  }

  @Override
  public void listAuditEvents(
      ListAuditEventsRequest r, StreamObserver<ListAuditEventsResponse> out) {
    answer(
        "ListAuditEvents",
        "",
        r,
        out,
        () -> {
          List<AuditEvent> all = auditEvents;
          int start = r.getPageToken().isEmpty() ? 0 : Integer.parseInt(r.getPageToken());
          int end = Math.min(start + (r.getPageSize() == 0 ? 100 : r.getPageSize()), all.size());
          var page = ListAuditEventsResponse.newBuilder().addAllEvents(all.subList(start, end));
          if (end < all.size()) {
            page.setNextPageToken(Integer.toString(end));
          }
          return page.build();
        });
  }

  // The lifecycle RPCs answer fixed values around the scripted outcome.

  /** The recovery codes status of every lifecycle answer but generate's. */
  static final RecoveryCodesStatus RECOVERY_STATUS =
      RecoveryCodesStatus.newBuilder()
          .setRemaining(9)
          .setIssued(10)
          .setGeneratedAtUnix(1_700_000_000L)
          .build();

  @Override
  public void generateRecoveryCodes(
      GenerateRecoveryCodesRequest r, StreamObserver<GenerateRecoveryCodesResponse> out) {
    answer(
        "GenerateRecoveryCodes",
        "",
        r,
        out,
        () ->
            GenerateRecoveryCodesResponse.newBuilder()
                .addCodes("k7q2-9xmf-w4c8")
                .addCodes("0abc-defg-hjkm")
                .setStatus(
                    RecoveryCodesStatus.newBuilder()
                        .setRemaining(2)
                        .setIssued(2)
                        .setGeneratedAtUnix(1_700_000_000L))
                .build());
  }

  @Override
  public void verifyRecoveryCode(
      VerifyRecoveryCodeRequest r, StreamObserver<VerifyRecoveryCodeResponse> out) {
    answer(
        "VerifyRecoveryCode",
        "",
        r,
        out,
        () ->
            VerifyRecoveryCodeResponse.newBuilder()
                .setOutcome(outcome)
                .setStatus(RECOVERY_STATUS)
                .build());
  }

  @Override
  public void unlock(UnlockRequest r, StreamObserver<UnlockResponse> out) {
    answer(
        "Unlock",
        "",
        r,
        out,
        () ->
            UnlockResponse.newBuilder()
                .setLockLifted(true)
                .setConsecutiveFailuresCleared(12)
                .setFactorsCleared(2)
                .setBudgetRefilled(true)
                .build());
  }

  @Override
  public void resync(ResyncRequest r, StreamObserver<ResyncResponse> out) {
    answer(
        "Resync",
        "",
        r,
        out,
        () ->
            ResyncResponse.newBuilder()
                .setOutcome(outcome)
                .setFactor(factor(r.getAccountId(), r.getFactorId()).toBuilder().setDriftSteps(10))
                .build());
  }

  @Override
  public void listFactors(ListFactorsRequest r, StreamObserver<ListFactorsResponse> out) {
    answer(
        "ListFactors",
        "",
        r,
        out,
        () ->
            ListFactorsResponse.newBuilder()
                .addFactors(factor(r.getAccountId(), "f-1").toBuilder().setDriftSteps(-3))
                .setRecoveryCodes(RECOVERY_STATUS)
                .build());
  }

  @Override
  public void close() throws InterruptedException {
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
