// Package totpd is a small client for totpd, the gRPC RFC 6238 TOTP
// verification service, on top of the generated stubs in package totpdv1.
//
//	c, err := totpd.NewClient("127.0.0.1:50051", totpd.WithInsecure())
//	if err != nil { ... }
//	defer c.Close()
//	out, err := c.Verify(ctx, "alice", "123456")
//
// Every call has a deadline (WithTimeout, default 5 s, retries included)
// unless ctx already has one. Calls failing with UNAVAILABLE (server
// unreachable or its database down: no verdict was reached) or
// RESOURCE_EXHAUSTED/OVERLOADED (refused before any work) are retried with
// jittered exponential backoff, waiting at least the server's
// google.rpc.RetryInfo delay; nothing else is retried, RATE_LIMITED least of
// all (it means "stop guessing"). Errors are *Error.
//
// The caller's identity: a client certificate (WithClientCertificate, mTLS)
// or a bearer token (WithToken), and the tenant (WithTenant) for a caller
// holding several. A refused identity is ErrUnauthenticated,
// ErrPermissionDenied or ErrTenantRequired (errors.Is), never retried.
//
// Enroll, Confirm, Disable and ForceDisable send a request_id (WithRequestID,
// or a random UUID made once per call and reused by each of its retries), so
// a retry after a lost response gets the first attempt's result instead of
// acting twice. Verify and BatchVerify are not idempotent: a verification
// retried after a lost response may be answered VerifyReplayed, which is the
// safe answer (ask for the next code). GenerateRecoveryCodes,
// VerifyRecoveryCode and Resync act on every attempt without a request_id:
// they are retried only on OVERLOADED (see lifecycle.go).
package totpd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// DefaultTimeout is the deadline of a call whose context has none.
const DefaultTimeout = 5 * time.Second

// Client calls totpd. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	ownConn bool
	rpc     totpdv1.TotpServiceClient
	cfg     config
}

type config struct {
	timeout        time.Duration
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	insecure       bool
	tlsConfig      *tls.Config
	rootCAFile     string
	certFile       string
	keyFile        string
	serverName     string
	conn           *grpc.ClientConn
	dialOptions    []grpc.DialOption

	token              *string
	tenant             *string
	tokenOverPlaintext bool
	identity           []string // metadata key-value pairs sent with every call
}

// Option configures a Client.
type Option func(*config)

// WithTimeout sets the deadline of calls whose context has none (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxAttempts bounds the attempts per call on UNAVAILABLE and OVERLOADED
// (default 4; 1 disables retries).
func WithMaxAttempts(n int) Option { return func(c *config) { c.maxAttempts = n } }

// WithBackoff sets the first and the largest wait between retries (default
// 100 ms and 2 s); a longer google.rpc.RetryInfo delay from the server wins.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.initialBackoff, c.maxBackoff = initial, max }
}

// WithInsecure uses plaintext: only for loopback or a trusted network.
func WithInsecure() Option { return func(c *config) { c.insecure = true } }

// WithTLSConfig uses this TLS configuration (the default is TLS with the
// system roots).
func WithTLSConfig(cfg *tls.Config) Option { return func(c *config) { c.tlsConfig = cfg } }

// WithRootCAFile trusts the PEM CA certificates in path instead of the
// system roots.
func WithRootCAFile(path string) Option { return func(c *config) { c.rootCAFile = path } }

// WithClientCertificate enables mutual TLS with a PEM certificate and key.
func WithClientCertificate(certFile, keyFile string) Option {
	return func(c *config) { c.certFile, c.keyFile = certFile, keyFile }
}

// WithServerName overrides the TLS server name (e.g. when dialing an IP).
func WithServerName(name string) Option { return func(c *config) { c.serverName = name } }

// WithConn uses a connection the caller owns; Close leaves it open.
func WithConn(conn *grpc.ClientConn) Option { return func(c *config) { c.conn = conn } }

// WithDialOptions adds grpc.DialOptions (interceptors, keepalive...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// NewClient creates a client for target ("host:port" or a gRPC target URI).
// It does not connect until the first call.
func NewClient(target string, opts ...Option) (*Client, error) {
	cfg := config{
		timeout:        DefaultTimeout,
		maxAttempts:    4,
		initialBackoff: 100 * time.Millisecond,
		maxBackoff:     2 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout <= 0 {
		return nil, errors.New("totpd: timeout must be positive")
	}
	if cfg.maxAttempts < 1 {
		return nil, errors.New("totpd: max attempts must be at least 1")
	}
	identity, err := cfg.identityMetadata(target)
	if err != nil {
		return nil, err
	}
	cfg.identity = identity
	if cfg.conn != nil {
		return &Client{conn: cfg.conn, rpc: totpdv1.NewTotpServiceClient(cfg.conn), cfg: cfg}, nil
	}
	creds, err := cfg.credentials()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, cfg.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("totpd: %w", err)
	}
	return &Client{conn: conn, ownConn: true, rpc: totpdv1.NewTotpServiceClient(conn), cfg: cfg}, nil
}

func (cfg *config) credentials() (credentials.TransportCredentials, error) {
	if cfg.insecure {
		if cfg.tlsConfig != nil || cfg.rootCAFile != "" || cfg.certFile != "" {
			return nil, errors.New("totpd: WithInsecure excludes the TLS options")
		}
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.tlsConfig != nil {
		tc = cfg.tlsConfig.Clone()
	}
	if cfg.rootCAFile != "" {
		pem, err := os.ReadFile(cfg.rootCAFile)
		if err != nil {
			return nil, fmt.Errorf("totpd: root CAs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("totpd: no PEM certificate in %s", cfg.rootCAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.certFile != "" || cfg.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
		if err != nil {
			return nil, fmt.Errorf("totpd: client certificate: %w", err)
		}
		tc.Certificates = append(tc.Certificates, cert)
	}
	if cfg.serverName != "" {
		tc.ServerName = cfg.serverName
	}
	return credentials.NewTLS(tc), nil
}

// Close closes the connection (unless it came from WithConn).
func (c *Client) Close() error {
	if !c.ownConn {
		return nil
	}
	return c.conn.Close()
}

// CallOption configures one call of Enroll, Confirm, Disable or ForceDisable.
type CallOption func(*callConfig)

type callConfig struct {
	requestID string
}

// WithRequestID sets the call's idempotency key (AIP-155; at most 64
// printable ASCII characters): a repeat with the same id and the same fields
// within the server's retention window returns the first result instead of
// acting twice; the same id with different fields fails with
// REQUEST_ID_REUSED. Without it (or with "") the client makes a random one
// per call. Pass your own to retry a call yourself, for example after it
// failed with DEADLINE_EXCEEDED or UNAVAILABLE.
func WithRequestID(id string) CallOption { return func(c *callConfig) { c.requestID = id } }

// requestID is the caller's request id, or a new random one.
func requestID(opts []CallOption) string {
	var cc callConfig
	for _, o := range opts {
		o(&cc)
	}
	if cc.requestID != "" {
		return cc.requestID
	}
	return uuid.NewString()
}

// retryable reports whether no work was done, so another attempt is safe and
// may succeed. UNAVAILABLE: the server or its database was unreachable (or
// the response was lost: a mutating call's request_id makes the retry return
// the first result). OVERLOADED: refused before any work. RATE_LIMITED is
// deliberately not retried: the caller must stop, not wait and guess again.
func retryable(e *Error) bool {
	return e.Code == codes.Unavailable ||
		(e.Code == codes.ResourceExhausted && e.Reason == totpdv1.ErrorReason_ERROR_REASON_OVERLOADED)
}

// call runs one logical call, the same req (and request_id) on every
// attempt, with the default deadline and the retries.
func call[Req, Resp any](ctx context.Context, c *Client, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	return callRetrying(ctx, c, retryable, rpc, req)
}

// callRetrying is call retrying only the errors for which retry is true.
func callRetrying[Req, Resp any](ctx context.Context, c *Client, retry func(*Error) bool, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	if len(c.cfg.identity) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, c.cfg.identity...)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
		defer cancel()
	}
	backoff := c.cfg.initialBackoff
	for attempt := 1; ; attempt++ {
		resp, err := rpc(ctx, req)
		if err == nil {
			return resp, nil
		}
		ferr := FromError(err)
		var terr *Error
		errors.As(ferr, &terr) // ferr may wrap it: an interceptor's own error
		if !retry(terr) || attempt >= c.cfg.maxAttempts {
			return resp, ferr
		}
		sleep := max(backoff/2+rand.N(backoff/2+1), terr.RetryAfter)
		if dl, _ := ctx.Deadline(); time.Until(dl) <= sleep {
			return resp, ferr
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, ferr
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.maxBackoff)
	}
}

// Enroll creates a PENDING factor; the result is the only copy of its secret.
// It is idempotent per request id (see WithRequestID).
func (c *Client) Enroll(ctx context.Context, p EnrollParams, opts ...CallOption) (*Enrollment, error) {
	r, err := call(ctx, c, c.rpc.Enroll, &totpdv1.EnrollRequest{
		AccountId:     p.AccountID,
		Label:         p.Label,
		Issuer:        p.Issuer,
		Algorithm:     p.Algorithm,
		Digits:        uint32(p.Digits),
		PeriodSeconds: uint32(p.Period / time.Second),
		RequestId:     requestID(opts),
	})
	if err != nil {
		return nil, err
	}
	return &Enrollment{
		Factor:       factorFromProto(r.GetFactor()),
		OtpauthURI:   r.GetOtpauthUri(),
		SecretBase32: r.GetSecretBase32(),
		QRPNG:        r.GetQrPng(),
		QRSVG:        r.GetQrSvg(),
	}, nil
}

// Confirm activates a PENDING factor with the first code its app shows. It
// is idempotent per request id (see WithRequestID).
func (c *Client) Confirm(ctx context.Context, accountID, factorID, code string, opts ...CallOption) (*Confirmation, error) {
	r, err := call(ctx, c, c.rpc.ConfirmEnrollment, &totpdv1.ConfirmEnrollmentRequest{
		AccountId: accountID, FactorId: factorID, Code: code, RequestId: requestID(opts),
	})
	if err != nil {
		return nil, err
	}
	return &Confirmation{Outcome: outcomeFromProto(r.GetOutcome()), Factor: factorFromProto(r.GetFactor())}, nil
}

// Verify checks a sign-in code against every ACTIVE factor of the account.
// It is not idempotent: after a retried UNAVAILABLE the answer may be
// VerifyReplayed.
func (c *Client) Verify(ctx context.Context, accountID, code string) (VerifyOutcome, error) {
	return c.VerifyFactor(ctx, accountID, "", code)
}

// VerifyFactor checks a sign-in code against one factor ("" means all).
func (c *Client) VerifyFactor(ctx context.Context, accountID, factorID, code string) (VerifyOutcome, error) {
	r, err := call(ctx, c, c.rpc.Verify, &totpdv1.VerifyRequest{
		AccountId: accountID, Code: code, FactorId: factorID,
	})
	if err != nil {
		return VerifyOutcome{}, err
	}
	return outcomeFromProto(r.GetOutcome()), nil
}

// BatchVerify checks many codes in one call. Results are in request order;
// an item's own error is in its Err and never fails the call.
func (c *Client) BatchVerify(ctx context.Context, items []BatchItem) ([]BatchResult, error) {
	req := &totpdv1.BatchVerifyRequest{Items: make([]*totpdv1.BatchVerifyItem, 0, len(items))}
	for _, it := range items {
		req.Items = append(req.Items, &totpdv1.BatchVerifyItem{AccountId: it.AccountID, Code: it.Code, FactorId: it.FactorID})
	}
	r, err := call(ctx, c, c.rpc.BatchVerify, req)
	if err != nil {
		return nil, err
	}
	out := make([]BatchResult, 0, len(r.GetResults()))
	for _, res := range r.GetResults() {
		if ie := res.GetError(); ie != nil {
			out = append(out, BatchResult{Err: itemError(ie)})
			continue
		}
		o := outcomeFromProto(res.GetOutcome())
		out = append(out, BatchResult{Outcome: &o})
	}
	return out, nil
}

// Disable turns off one factor ("" means every factor of the account) with
// a current valid code, which is consumed. It is idempotent per request id
// (see WithRequestID).
func (c *Client) Disable(ctx context.Context, accountID, factorID, code string, opts ...CallOption) (*DisableResult, error) {
	return c.disable(ctx, &totpdv1.DisableRequest{
		AccountId: accountID, FactorId: factorID, Code: code, RequestId: requestID(opts),
	})
}

// ForceDisable is the privileged admin override that needs no code. Reserve
// it for authenticated administrator paths. It is idempotent per request id
// (see WithRequestID).
func (c *Client) ForceDisable(ctx context.Context, accountID, factorID string, opts ...CallOption) (*DisableResult, error) {
	return c.disable(ctx, &totpdv1.DisableRequest{
		AccountId: accountID, FactorId: factorID, Force: true, RequestId: requestID(opts),
	})
}

func (c *Client) disable(ctx context.Context, req *totpdv1.DisableRequest) (*DisableResult, error) {
	r, err := call(ctx, c, c.rpc.Disable, req)
	if err != nil {
		return nil, err
	}
	return &DisableResult{Outcome: outcomeFromProto(r.GetOutcome()), Factors: factorsFromProto(r.GetFactors())}, nil
}

// GetFactor returns one factor (never secret material).
func (c *Client) GetFactor(ctx context.Context, accountID, factorID string) (Factor, error) {
	r, err := call(ctx, c, c.rpc.GetFactor, &totpdv1.GetFactorRequest{AccountId: accountID, FactorId: factorID})
	if err != nil {
		return Factor{}, err
	}
	return factorFromProto(r.GetFactor()), nil
}

// ListFactors returns the account's factors, newest first.
func (c *Client) ListFactors(ctx context.Context, accountID string, includeInactive bool) ([]Factor, error) {
	r, err := call(ctx, c, c.rpc.ListFactors, &totpdv1.ListFactorsRequest{AccountId: accountID, IncludeInactive: includeInactive})
	if err != nil {
		return nil, err
	}
	return factorsFromProto(r.GetFactors()), nil
}
