package totpd_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// fail is one scripted failure: a status with a totpd ErrorInfo (unless
// reason is "") and a google.rpc.RetryInfo (unless retryAfter is 0).
type fail struct {
	code       codes.Code
	reason     string
	retryAfter time.Duration
}

func (f fail) err(t *testing.T) error {
	t.Helper()
	var details []protoadapt.MessageV1
	if f.reason != "" {
		details = append(details, &errdetails.ErrorInfo{Domain: "totpd.v1", Reason: f.reason})
	}
	if f.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryAfter)})
	}
	st, err := status.New(f.code, "scripted "+f.code.String()).WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

var unavailable = fail{code: codes.Unavailable, reason: "ERROR_REASON_STORE_UNAVAILABLE"}

type received struct {
	method    string
	requestID string
	at        time.Time
}

// fakeTotpd is an in-process TotpService for what a real totpd cannot be
// made to do on demand (fail an attempt, attach a RetryInfo): it answers
// from its script while it lasts, then succeeds, and records every request.
type fakeTotpd struct {
	totpdv1.UnimplementedTotpServiceServer
	t       *testing.T
	mu      sync.Mutex
	script  []fail
	outcome *totpdv1.VerifyOutcome
	got     []received
	mds     []metadata.MD // each call's incoming metadata, in order
	audit   []*totpdv1.AuditEvent
	auditRq []*totpdv1.ListAuditEventsRequest
	reqs    []any // the lifecycle RPCs' requests, in order
}

// startFake serves a fakeTotpd on a free loopback port until the test ends.
func startFake(t *testing.T, script ...fail) (*fakeTotpd, string) {
	t.Helper()
	f := &fakeTotpd{t: t, script: script,
		outcome: &totpdv1.VerifyOutcome{Result: totpdv1.VerifyResult_VERIFY_RESULT_VALID}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		f.mu.Lock()
		f.mds = append(f.mds, md)
		f.mu.Unlock()
		return h(ctx, req)
	}))
	totpdv1.RegisterTotpServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func (f *fakeTotpd) answer(method, requestID string) (*totpdv1.VerifyOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, received{method, requestID, time.Now()})
	if len(f.script) == 0 {
		return f.outcome, nil
	}
	next := f.script[0]
	f.script = f.script[1:]
	return nil, next.err(f.t)
}

func (f *fakeTotpd) received() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]received(nil), f.got...)
}

func (f *fakeTotpd) setOutcome(o *totpdv1.VerifyOutcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcome = o
}

func (f *fakeTotpd) Enroll(_ context.Context, r *totpdv1.EnrollRequest) (*totpdv1.EnrollResponse, error) {
	if _, err := f.answer("Enroll", r.GetRequestId()); err != nil {
		return nil, err
	}
	return &totpdv1.EnrollResponse{Factor: &totpdv1.Factor{FactorId: "f-1", AccountId: r.GetAccountId()}}, nil
}

func (f *fakeTotpd) ConfirmEnrollment(_ context.Context, r *totpdv1.ConfirmEnrollmentRequest) (*totpdv1.ConfirmEnrollmentResponse, error) {
	o, err := f.answer("ConfirmEnrollment", r.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &totpdv1.ConfirmEnrollmentResponse{Outcome: o, Factor: &totpdv1.Factor{FactorId: r.GetFactorId()}}, nil
}

func (f *fakeTotpd) Verify(_ context.Context, _ *totpdv1.VerifyRequest) (*totpdv1.VerifyResponse, error) {
	o, err := f.answer("Verify", "")
	if err != nil {
		return nil, err
	}
	return &totpdv1.VerifyResponse{Outcome: o}, nil
}

func (f *fakeTotpd) Disable(_ context.Context, r *totpdv1.DisableRequest) (*totpdv1.DisableResponse, error) {
	o, err := f.answer("Disable", r.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &totpdv1.DisableResponse{Outcome: o}, nil
}

func (f *fakeTotpd) metadata() []metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]metadata.MD(nil), f.mds...)
}

// ListAuditEvents pages f.audit as the server does: offset tokens, 100 per
// page by default.
func (f *fakeTotpd) ListAuditEvents(_ context.Context, r *totpdv1.ListAuditEventsRequest) (*totpdv1.ListAuditEventsResponse, error) {
	if _, err := f.answer("ListAuditEvents", ""); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auditRq = append(f.auditRq, r)
	start, _ := strconv.Atoi(r.GetPageToken())
	size := int(r.GetPageSize())
	if size == 0 {
		size = 100
	}
	end := min(start+size, len(f.audit))
	resp := &totpdv1.ListAuditEventsResponse{Events: f.audit[start:end]}
	if end < len(f.audit) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// The lifecycle RPCs answer fixed values (recoveryStatus, a factor with a
// drift of 10 steps) around the scripted outcome, and record their requests.

var recoveryStatus = &totpdv1.RecoveryCodesStatus{Remaining: 9, Issued: 10, GeneratedAtUnix: 1_700_000_000}

func (f *fakeTotpd) record(req any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
}

func (f *fakeTotpd) requests() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.reqs...)
}

func (f *fakeTotpd) GenerateRecoveryCodes(_ context.Context, r *totpdv1.GenerateRecoveryCodesRequest) (*totpdv1.GenerateRecoveryCodesResponse, error) {
	f.record(r)
	if _, err := f.answer("GenerateRecoveryCodes", ""); err != nil {
		return nil, err
	}
	return &totpdv1.GenerateRecoveryCodesResponse{Codes: []string{"k7q2-9xmf-w4c8", "0abc-defg-hjkm"},
		Status: &totpdv1.RecoveryCodesStatus{Remaining: 2, Issued: 2, GeneratedAtUnix: 1_700_000_000}}, nil
}

func (f *fakeTotpd) VerifyRecoveryCode(_ context.Context, r *totpdv1.VerifyRecoveryCodeRequest) (*totpdv1.VerifyRecoveryCodeResponse, error) {
	f.record(r)
	o, err := f.answer("VerifyRecoveryCode", "")
	if err != nil {
		return nil, err
	}
	return &totpdv1.VerifyRecoveryCodeResponse{Outcome: o, Status: recoveryStatus}, nil
}

func (f *fakeTotpd) Unlock(_ context.Context, r *totpdv1.UnlockRequest) (*totpdv1.UnlockResponse, error) {
	f.record(r)
	if _, err := f.answer("Unlock", ""); err != nil {
		return nil, err
	}
	return &totpdv1.UnlockResponse{LockLifted: true, ConsecutiveFailuresCleared: 12, FactorsCleared: 2, BudgetRefilled: true}, nil
}

func (f *fakeTotpd) Resync(_ context.Context, r *totpdv1.ResyncRequest) (*totpdv1.ResyncResponse, error) {
	f.record(r)
	o, err := f.answer("Resync", "")
	if err != nil {
		return nil, err
	}
	return &totpdv1.ResyncResponse{Outcome: o, Factor: &totpdv1.Factor{
		FactorId: r.GetFactorId(), AccountId: r.GetAccountId(), DriftSteps: 10}}, nil
}

func (f *fakeTotpd) ListFactors(_ context.Context, r *totpdv1.ListFactorsRequest) (*totpdv1.ListFactorsResponse, error) {
	f.record(r)
	if _, err := f.answer("ListFactors", ""); err != nil {
		return nil, err
	}
	return &totpdv1.ListFactorsResponse{Factors: []*totpdv1.Factor{{FactorId: "f-1", AccountId: r.GetAccountId(), DriftSteps: -3}},
		RecoveryCodes: recoveryStatus}, nil
}
