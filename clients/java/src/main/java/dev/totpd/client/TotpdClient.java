package dev.totpd.client;

import dev.totpd.v1.Algorithm;
import dev.totpd.v1.BatchVerifyItem;
import dev.totpd.v1.BatchVerifyRequest;
import dev.totpd.v1.BatchVerifyResult;
import dev.totpd.v1.ConfirmEnrollmentRequest;
import dev.totpd.v1.ConfirmEnrollmentResponse;
import dev.totpd.v1.DisableRequest;
import dev.totpd.v1.DisableResponse;
import dev.totpd.v1.EnrollRequest;
import dev.totpd.v1.EnrollResponse;
import dev.totpd.v1.GenerateRecoveryCodesRequest;
import dev.totpd.v1.GenerateRecoveryCodesResponse;
import dev.totpd.v1.GetFactorRequest;
import dev.totpd.v1.ListAuditEventsRequest;
import dev.totpd.v1.ListAuditEventsResponse;
import dev.totpd.v1.ListFactorsRequest;
import dev.totpd.v1.ListFactorsResponse;
import dev.totpd.v1.ResyncRequest;
import dev.totpd.v1.ResyncResponse;
import dev.totpd.v1.TotpServiceGrpc;
import dev.totpd.v1.UnlockRequest;
import dev.totpd.v1.UnlockResponse;
import dev.totpd.v1.VerifyRecoveryCodeRequest;
import dev.totpd.v1.VerifyRecoveryCodeResponse;
import dev.totpd.v1.VerifyRequest;
import io.grpc.ChannelCredentials;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.stream.Stream;

/**
 * A small, thread-safe client for totpd's {@code totpd.v1.TotpService}.
 *
 * <p>Every call has a deadline (default 5 s, covering retries). Calls that fail with UNAVAILABLE
 * (server unreachable or its database down: no verdict was reached) or RESOURCE_EXHAUSTED /
 * OVERLOADED (refused before any work) are retried with jittered exponential backoff, waiting at
 * least the server's {@code google.rpc.RetryInfo} delay, at most {@code maxAttempts} times in all
 * and never past the deadline; no other status is retried, RATE_LIMITED least of all (it means
 * "stop guessing"). Errors are thrown as {@link TotpdException}; a wrong or reused code is a {@link
 * VerifyOutcome}, not an exception.
 *
 * <p>{@code enroll}, {@code confirm}, {@code disable} and {@code forceDisable} send a request id
 * (AIP-155): the caller's, or a random UUID made once per call and reused by each of its retries,
 * so a retry after a lost response gets the first attempt's result instead of acting twice. A
 * request id is at most 64 printable ASCII characters; null or empty means a generated one. Pass
 * your own to retry a call yourself (for example after DEADLINE_EXCEEDED); the same id with
 * different fields fails with REQUEST_ID_REUSED. {@code verify} and {@code batchVerify} are not
 * idempotent: a verification retried after a lost response may be answered REPLAYED, which is the
 * safe answer (ask for the next code). {@code generateRecoveryCodes}, {@code verifyRecoveryCode}
 * and {@code resync} act on every attempt without a request id: they are retried only on
 * OVERLOADED.
 *
 * <p>The caller's identity: a client certificate ({@link Builder#clientCertificate}) or a bearer
 * token ({@link Builder#token}), sent as {@code authorization: Bearer <token>} on every call, and
 * the tenant ({@link Builder#tenant}, sent as {@code x-totpd-tenant}) for a caller holding several.
 * A refused identity throws {@link UnauthenticatedException}, {@link PermissionDeniedException} or
 * {@link TenantRequiredException}; none is retried.
 *
 * <pre>{@code
 * try (TotpdClient totpd = TotpdClient.builder("127.0.0.1:50051").plaintext().build()) {
 *   VerifyOutcome v = totpd.verify("alice", "123456");
 * }
 * }</pre>
 */
public final class TotpdClient implements AutoCloseable {
  /** The request metadata naming the tenant a call acts in. */
  public static final String TENANT_HEADER = "x-totpd-tenant";

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final TotpServiceGrpc.TotpServiceBlockingStub stub;
  private final Duration deadline;
  private final int maxAttempts;
  private final Duration initialBackoff;
  private final Duration maxBackoff;

  private TotpdClient(Builder b, ManagedChannel channel, boolean ownsChannel, Metadata identity) {
    this.channel = channel;
    this.ownsChannel = ownsChannel;
    TotpServiceGrpc.TotpServiceBlockingStub s = TotpServiceGrpc.newBlockingStub(channel);
    this.stub =
        identity == null
            ? s
            : s.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(identity));
    this.deadline = b.deadline;
    this.maxAttempts = b.maxAttempts;
    this.initialBackoff = b.initialBackoff;
    this.maxBackoff = b.maxBackoff;
  }

  /** A builder for a client of the server at {@code target} ("host:port" or a gRPC target URI). */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  // ---- RPCs -------------------------------------------------------------------------------

  /** Enrolls a new authenticator app with the server's defaults (SHA1, 6 digits, 30 s). */
  public Enrollment enroll(String accountId, String label) {
    return enroll(accountId, label, null);
  }

  /** Enrolls with the server's defaults under the caller's request id. */
  public Enrollment enroll(String accountId, String label, String requestId) {
    return enroll(
        EnrollRequest.newBuilder()
            .setAccountId(accountId)
            .setLabel(label)
            .setRequestId(requestId(requestId))
            .build());
  }

  /**
   * Enrolls with every option of the request (issuer, algorithm, digits, period, request id); an
   * empty request id is replaced by a generated one.
   */
  public Enrollment enroll(EnrollRequest request) {
    EnrollRequest withId =
        request.getRequestId().isEmpty()
            ? request.toBuilder().setRequestId(requestId(null)).build()
            : request;
    EnrollResponse r = call(s -> s.enroll(withId));
    return new Enrollment(
        Factor.fromProto(r.getFactor()),
        r.getOtpauthUri(),
        r.getSecretBase32(),
        r.getQrPng().toByteArray(),
        r.getQrSvg());
  }

  /** Enrolls with an explicit algorithm, digits and period. */
  public Enrollment enroll(
      String accountId, String label, String issuer, Algorithm algorithm, int digits, int period) {
    return enroll(
        EnrollRequest.newBuilder()
            .setAccountId(accountId)
            .setLabel(label)
            .setIssuer(issuer == null ? "" : issuer)
            .setAlgorithm(algorithm)
            .setDigits(digits)
            .setPeriodSeconds(period)
            .build());
  }

  /** Activates a PENDING factor with the first code its app shows. */
  public Confirmation confirm(String accountId, String factorId, String code) {
    return confirm(accountId, factorId, code, null);
  }

  /** Activates a PENDING factor under the caller's request id. */
  public Confirmation confirm(String accountId, String factorId, String code, String requestId) {
    ConfirmEnrollmentRequest request =
        ConfirmEnrollmentRequest.newBuilder()
            .setAccountId(accountId)
            .setFactorId(factorId)
            .setCode(code)
            .setRequestId(requestId(requestId))
            .build();
    ConfirmEnrollmentResponse r = call(s -> s.confirmEnrollment(request));
    return new Confirmation(
        VerifyOutcome.fromProto(r.getOutcome()), Factor.fromProto(r.getFactor()));
  }

  /**
   * Checks a sign-in code against every ACTIVE factor of the account. Not idempotent: after a
   * retried UNAVAILABLE the answer may be REPLAYED.
   */
  public VerifyOutcome verify(String accountId, String code) {
    return verify(accountId, code, "");
  }

  /** Checks a sign-in code against one factor of the account (empty factorId: all of them). */
  public VerifyOutcome verify(String accountId, String code, String factorId) {
    return VerifyOutcome.fromProto(
        call(s ->
                s.verify(
                    VerifyRequest.newBuilder()
                        .setAccountId(accountId)
                        .setCode(code)
                        .setFactorId(factorId == null ? "" : factorId)
                        .build()))
            .getOutcome());
  }

  /** Checks many codes in one call; results are in request order, each with its own error. */
  public List<BatchResult> batchVerify(List<BatchItem> items) {
    BatchVerifyRequest.Builder req = BatchVerifyRequest.newBuilder();
    for (BatchItem it : items) {
      req.addItems(
          BatchVerifyItem.newBuilder()
              .setAccountId(it.accountId())
              .setCode(it.code())
              .setFactorId(it.factorId()));
    }
    BatchVerifyRequest built = req.build();
    List<BatchResult> out = new ArrayList<>(items.size());
    for (BatchVerifyResult r : call(s -> s.batchVerify(built)).getResultsList()) {
      out.add(BatchResult.fromProto(r));
    }
    return out;
  }

  /** Disables one factor (or every factor when factorId is empty) with a current valid code. */
  public DisableResult disable(String accountId, String factorId, String code) {
    return disable(accountId, factorId, code, null);
  }

  /** Disables with a current valid code under the caller's request id. */
  public DisableResult disable(String accountId, String factorId, String code, String requestId) {
    return disable(
        DisableRequest.newBuilder()
            .setAccountId(accountId)
            .setFactorId(factorId == null ? "" : factorId)
            .setCode(code)
            .setRequestId(requestId(requestId))
            .build());
  }

  /** Privileged admin override: disables without a code. Reserve it for authenticated admins. */
  public DisableResult forceDisable(String accountId, String factorId) {
    return forceDisable(accountId, factorId, null);
  }

  /** The admin override under the caller's request id. */
  public DisableResult forceDisable(String accountId, String factorId, String requestId) {
    return disable(
        DisableRequest.newBuilder()
            .setAccountId(accountId)
            .setFactorId(factorId == null ? "" : factorId)
            .setForce(true)
            .setRequestId(requestId(requestId))
            .build());
  }

  private DisableResult disable(DisableRequest request) {
    DisableResponse r = call(s -> s.disable(request));
    List<Factor> factors = new ArrayList<>();
    r.getFactorsList().forEach(f -> factors.add(Factor.fromProto(f)));
    return new DisableResult(VerifyOutcome.fromProto(r.getOutcome()), List.copyOf(factors));
  }

  /** Returns one factor (never secret material). */
  public Factor getFactor(String accountId, String factorId) {
    return Factor.fromProto(
        call(s ->
                s.getFactor(
                    GetFactorRequest.newBuilder()
                        .setAccountId(accountId)
                        .setFactorId(factorId)
                        .build()))
            .getFactor());
  }

  /** Returns the account's factors, newest first; inactive ones too when asked. */
  public List<Factor> listFactors(String accountId, boolean includeInactive) {
    List<Factor> out = new ArrayList<>();
    call(s ->
            s.listFactors(
                ListFactorsRequest.newBuilder()
                    .setAccountId(accountId)
                    .setIncludeInactive(includeInactive)
                    .build()))
        .getFactorsList()
        .forEach(f -> out.add(Factor.fromProto(f)));
    return List.copyOf(out);
  }

  /** {@link #listFactors} with the account's recovery codes status. */
  public MfaStatus mfaStatus(String accountId, boolean includeInactive) {
    ListFactorsRequest request =
        ListFactorsRequest.newBuilder()
            .setAccountId(accountId)
            .setIncludeInactive(includeInactive)
            .build();
    ListFactorsResponse r = call(s -> s.listFactors(request));
    List<Factor> factors = new ArrayList<>(r.getFactorsCount());
    r.getFactorsList().forEach(f -> factors.add(Factor.fromProto(f)));
    return new MfaStatus(List.copyOf(factors), RecoveryCodesStatus.fromProto(r.getRecoveryCodes()));
  }

  /**
   * Makes a new set of recovery codes for an account with an ACTIVE factor; any earlier set stops
   * working. Retried only on OVERLOADED: after UNAVAILABLE a set may have been made whose response
   * was lost; calling again makes a fresh one (the lost one is dead).
   */
  public RecoveryCodes generateRecoveryCodes(String accountId) {
    GenerateRecoveryCodesRequest request =
        GenerateRecoveryCodesRequest.newBuilder().setAccountId(accountId).build();
    GenerateRecoveryCodesResponse r =
        call(s -> s.generateRecoveryCodes(request), TotpdException::wasRefusedBeforeWork);
    return new RecoveryCodes(
        List.copyOf(r.getCodesList()), RecoveryCodesStatus.fromProto(r.getStatus()));
  }

  /**
   * Consumes one recovery code, typed in any case, with or without separators; wrong codes count
   * toward the account's attempt limits. Retried only on OVERLOADED, never on a failure that may
   * have consumed the code (UNAVAILABLE).
   */
  public RecoveryCodeVerdict verifyRecoveryCode(String accountId, String code) {
    VerifyRecoveryCodeRequest request =
        VerifyRecoveryCodeRequest.newBuilder().setAccountId(accountId).setCode(code).build();
    VerifyRecoveryCodeResponse r =
        call(s -> s.verifyRecoveryCode(request), TotpdException::wasRefusedBeforeWork);
    return new RecoveryCodeVerdict(
        VerifyOutcome.fromProto(r.getOutcome()), RecoveryCodesStatus.fromProto(r.getStatus()));
  }

  /**
   * Lifts the account's attempt limits (needs the admin permission): every live factor's failures
   * and backoff when {@code factorId} is null or empty, otherwise only that factor's; the
   * account-wide lock, run of failures and failure budget either way. Idempotent, so retried like
   * {@code enroll}; the result describes the last attempt.
   */
  public UnlockResult unlock(String accountId, String factorId) {
    UnlockRequest request =
        UnlockRequest.newBuilder()
            .setAccountId(accountId)
            .setFactorId(factorId == null ? "" : factorId)
            .build();
    UnlockResponse r = call(s -> s.unlock(request));
    return new UnlockResult(
        r.getLockLifted(),
        r.getConsecutiveFailuresCleared(),
        r.getFactorsCleared(),
        r.getBudgetRefilled());
  }

  /**
   * Measures an ACTIVE factor's clock drift from two consecutive codes of its app ({@code code2}
   * the one after {@code code1}) and stores it; both steps are consumed. INVALID (no such pair) and
   * REPLAYED (its steps were already used; no drift stored) each count as one failure. Retried only
   * on OVERLOADED.
   */
  public ResyncResult resync(String accountId, String factorId, String code1, String code2) {
    ResyncRequest request =
        ResyncRequest.newBuilder()
            .setAccountId(accountId)
            .setFactorId(factorId)
            .setCode1(code1)
            .setCode2(code2)
            .build();
    ResyncResponse r = call(s -> s.resync(request), TotpdException::wasRefusedBeforeWork);
    return new ResyncResult(
        VerifyOutcome.fromProto(r.getOutcome()), Factor.fromProto(r.getFactor()));
  }

  /**
   * One page of audit events, oldest first (needs the admin permission). {@code pageSize} 0 means
   * the server's default (100); pass the page's {@code nextPageToken}, with the same filter, for
   * the next page, or use {@link #auditEvents}.
   */
  public AuditPage listAuditEvents(AuditFilter filter, int pageSize, String pageToken) {
    ListAuditEventsRequest request =
        ListAuditEventsRequest.newBuilder()
            .setTenant(AuditFilter.orEmpty(filter.tenant()))
            .setAccountId(AuditFilter.orEmpty(filter.accountId()))
            .setCaller(AuditFilter.orEmpty(filter.caller()))
            .setMethod(AuditFilter.orEmpty(filter.method()))
            .setStartTimeUnixMicros(AuditFilter.micros(filter.since()))
            .setEndTimeUnixMicros(AuditFilter.micros(filter.until()))
            .setPageSize(pageSize)
            .setPageToken(AuditFilter.orEmpty(pageToken))
            .build();
    ListAuditEventsResponse r = call(s -> s.listAuditEvents(request));
    List<AuditEvent> events = new ArrayList<>(r.getEventsCount());
    r.getEventsList().forEach(e -> events.add(AuditEvent.fromProto(e)));
    return new AuditPage(List.copyOf(events), r.getNextPageToken());
  }

  /**
   * Every matching event, oldest first, fetched lazily page after page (each page one call with its
   * own deadline): {@code auditEvents(filter).limit(50)} fetches no more pages than it needs. The
   * first page is fetched at once; a failed page throws from the stream's terminal operation.
   */
  public Stream<AuditEvent> auditEvents(AuditFilter filter) {
    return Stream.iterate(
            listAuditEvents(filter, 0, ""),
            page -> page != null,
            page ->
                page.nextPageToken().isEmpty()
                    ? null
                    : listAuditEvents(filter, 0, page.nextPageToken()))
        .flatMap(page -> page.events().stream());
  }

  // ---- plumbing ---------------------------------------------------------------------------

  private static String requestId(String given) {
    return given == null || given.isEmpty() ? UUID.randomUUID().toString() : given;
  }

  /** One logical call: the same request (and request id) on every attempt. */
  private <T> T call(Function<TotpServiceGrpc.TotpServiceBlockingStub, T> rpc) {
    return call(rpc, TotpdException::isRetryable);
  }

  /** One logical call, retrying only the errors {@code retry} accepts. */
  private <T> T call(
      Function<TotpServiceGrpc.TotpServiceBlockingStub, T> rpc, Predicate<TotpdException> retry) {
    Deadline overall = Deadline.after(deadline.toNanos(), TimeUnit.NANOSECONDS);
    long backoffNanos = initialBackoff.toNanos();
    for (int attempt = 1; ; attempt++) {
      try {
        return rpc.apply(stub.withDeadline(overall));
      } catch (StatusRuntimeException e) {
        TotpdException error = TotpdException.fromThrowable(e);
        if (!retry.test(error) || attempt >= maxAttempts) {
          throw error;
        }
        // Jitter, at least the server's delay, and never sleep past the overall deadline.
        long jitter = ThreadLocalRandom.current().nextLong(backoffNanos / 2, backoffNanos + 1);
        long sleep = Math.max(jitter, error.retryAfter().map(Duration::toNanos).orElse(0L));
        if (overall.timeRemaining(TimeUnit.NANOSECONDS) <= sleep) {
          throw error;
        }
        try {
          TimeUnit.NANOSECONDS.sleep(sleep);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw error;
        }
        backoffNanos = Math.min(backoffNanos * 2, maxBackoff.toNanos());
      }
    }
  }

  /** Shuts the channel down (if this client created it) and waits up to 5 s. */
  @Override
  public void close() {
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /** Configures a {@link TotpdClient}. TLS with the system trust store is the default. */
  public static final class Builder {
    private final String target;
    private Duration deadline = Duration.ofSeconds(5);
    private int maxAttempts = 4;
    private Duration initialBackoff = Duration.ofMillis(100);
    private Duration maxBackoff = Duration.ofSeconds(2);
    private boolean plaintext;
    private File rootCerts;
    private File clientCertChain;
    private File clientKey;
    private String authority;
    private Map<String, ?> serviceConfig;
    private ManagedChannel channel;
    private String token;
    private String tenant;
    private boolean tokenOverPlaintext;

    private Builder(String target) {
      this.target = Objects.requireNonNull(target, "target");
    }

    /** The deadline of each call, retries included (default 5 s). */
    public Builder deadline(Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("deadline must be positive");
      }
      this.deadline = d;
      return this;
    }

    /** Attempts per call on UNAVAILABLE or OVERLOADED (default 4; 1 disables retries). */
    public Builder maxAttempts(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxAttempts must be at least 1");
      }
      this.maxAttempts = n;
      return this;
    }

    /**
     * First and largest backoff between retries (default 100 ms and 2 s); a longer {@code
     * google.rpc.RetryInfo} delay from the server wins.
     */
    public Builder backoff(Duration initial, Duration max) {
      this.initialBackoff = initial;
      this.maxBackoff = max;
      return this;
    }

    /** No TLS: only for a server on loopback or inside a trusted network. */
    public Builder plaintext() {
      this.plaintext = true;
      return this;
    }

    /** TLS trusting the PEM CA certificates in {@code caPem} instead of the system roots. */
    public Builder rootCerts(File caPem) {
      this.rootCerts = caPem;
      return this;
    }

    /** Mutual TLS: present this PEM certificate chain and PKCS#8 PEM private key. */
    public Builder clientCertificate(File certChainPem, File privateKeyPem) {
      this.clientCertChain = certChainPem;
      this.clientKey = privateKeyPem;
      return this;
    }

    /** Overrides the TLS server name / :authority (e.g. when connecting by IP). */
    public Builder authority(String authority) {
      this.authority = authority;
      return this;
    }

    /**
     * The channel's default service config, parsed JSON as maps, lists, strings and Doubles: e.g.
     * {@code round_robin} over every address the target resolves to, with a {@code retryPolicy} for
     * UNAVAILABLE (README, "Spreading calls over replicas"). Ignored with {@link #channel}.
     */
    public Builder defaultServiceConfig(Map<String, ?> serviceConfig) {
      this.serviceConfig = Objects.requireNonNull(serviceConfig, "serviceConfig");
      return this;
    }

    /**
     * Sends {@code authorization: Bearer <token>} on every call: the caller's identity (or present
     * a client certificate). With {@link #plaintext()} the token is refused for a target beyond
     * loopback unless {@link #allowTokenOverPlaintext()}; with {@link #channel} it is sent as
     * given.
     */
    public Builder token(String token) {
      this.token = Identity.checked(token, "token");
      return this;
    }

    /** Sends {@code x-totpd-tenant}; only a caller holding several tenants needs it. */
    public Builder tenant(String tenant) {
      this.tenant = Identity.checked(tenant, "tenant");
      return this;
    }

    /** Allows {@link #token} in plaintext beyond loopback: TLS ends at a proxy you trust. */
    public Builder allowTokenOverPlaintext() {
      this.tokenOverPlaintext = true;
      return this;
    }

    /** Uses a channel the caller owns (and closes); TLS options are then ignored. */
    public Builder channel(ManagedChannel channel) {
      this.channel = channel;
      return this;
    }

    public TotpdClient build() {
      Metadata identity = Identity.headers(token, tenant);
      if (channel != null) {
        return new TotpdClient(this, channel, false, identity);
      }
      if (token != null && plaintext && !tokenOverPlaintext && !Identity.isLoopback(target)) {
        throw new IllegalStateException(
            "refusing to send the token in plaintext to "
                + target
                + ": use TLS, or allowTokenOverPlaintext() if TLS ends at a proxy on the way");
      }
      ChannelCredentials creds;
      if (plaintext) {
        if (rootCerts != null || clientCertChain != null) {
          throw new IllegalStateException("plaintext() excludes rootCerts and clientCertificate");
        }
        creds = InsecureChannelCredentials.create();
      } else {
        TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder();
        try {
          if (rootCerts != null) {
            tls.trustManager(rootCerts);
          }
          if (clientCertChain != null) {
            tls.keyManager(clientCertChain, clientKey);
          }
        } catch (IOException e) {
          throw new UncheckedIOException("cannot read TLS material", e);
        }
        creds = tls.build();
      }
      var cb = Grpc.newChannelBuilder(target, creds);
      if (authority != null) {
        cb.overrideAuthority(authority);
      }
      if (serviceConfig != null) {
        cb.defaultServiceConfig(serviceConfig);
      }
      return new TotpdClient(this, cb.build(), true, identity);
    }
  }
}
