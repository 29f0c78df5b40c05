package totpd_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

func newClient(t *testing.T) *totpd.Client {
	t.Helper()
	c, err := totpd.NewClient(target, totpd.WithInsecure(), totpd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func account(name string) string { return "go-" + name + "-" + uuid.NewString() }

// code is what pquerna/otp computes for the enrollment at t.
func code(t *testing.T, e *totpd.Enrollment, at time.Time) string {
	t.Helper()
	alg := map[totpdv1.Algorithm]otp.Algorithm{
		totpdv1.Algorithm_ALGORITHM_SHA256: otp.AlgorithmSHA256,
		totpdv1.Algorithm_ALGORITHM_SHA512: otp.AlgorithmSHA512,
	}[e.Factor.Algorithm] // zero value is otp.AlgorithmSHA1
	c, err := totp.GenerateCodeCustom(e.SecretBase32, at, totp.ValidateOpts{
		Period:    uint(e.Factor.Period / time.Second),
		Digits:    otp.Digits(e.Factor.Digits),
		Algorithm: alg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextCode is the code of the step after the current one: still unused
// after a confirmation consumed the current step.
func nextCode(t *testing.T, e *totpd.Enrollment) string {
	return code(t, e, time.Now().Add(e.Factor.Period))
}

func enrollActive(t *testing.T, c *totpd.Client, accountID string) *totpd.Enrollment {
	t.Helper()
	ctx := context.Background()
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: accountID, Label: "Pixel 8"})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := c.Confirm(ctx, accountID, e.Factor.FactorID, code(t, e, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Outcome.Result != totpd.VerifyValid || conf.Factor.State != totpdv1.FactorState_FACTOR_STATE_ACTIVE {
		t.Fatalf("confirm: %+v", conf)
	}
	return e
}

func TestEnrollConfirmVerifyReplayDisable(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	alice := account("alice")

	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: alice, Label: "Pixel 8"})
	if err != nil {
		t.Fatal(err)
	}
	f := e.Factor
	if f.State != totpdv1.FactorState_FACTOR_STATE_PENDING || f.AccountID != alice || f.Label != "Pixel 8" {
		t.Fatalf("enrolled factor: %+v", f)
	}
	if f.Algorithm != totpdv1.Algorithm_ALGORITHM_SHA1 || f.Digits != 6 || f.Period != 30*time.Second {
		t.Fatalf("defaults: %+v", f)
	}
	key, err := otp.NewKeyFromURL(e.OtpauthURI)
	if err != nil {
		t.Fatalf("otpauth URI does not parse: %v", err)
	}
	if key.Secret() != e.SecretBase32 || key.Type() != "totp" {
		t.Fatalf("URI secret/type mismatch: %s %s", key.Type(), key.AccountName())
	}
	if !strings.HasPrefix(string(e.QRPNG), "\x89PNG") || !strings.Contains(e.QRSVG, "<svg") {
		t.Fatal("QR code missing")
	}

	conf, err := c.Confirm(ctx, alice, f.FactorID, code(t, e, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Outcome.Result != totpd.VerifyValid || conf.Factor.State != totpdv1.FactorState_FACTOR_STATE_ACTIVE || conf.Factor.ConfirmedAt.IsZero() {
		t.Fatalf("confirm: %+v", conf)
	}

	next := nextCode(t, e)
	v, err := c.Verify(ctx, alice, next)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Valid() || v.FactorID != f.FactorID || (v.StepOffset != 0 && v.StepOffset != 1) {
		t.Fatalf("verify: %+v", v)
	}
	again, err := c.Verify(ctx, alice, next)
	if err != nil {
		t.Fatal(err)
	}
	if again.Result != totpd.VerifyReplayed {
		t.Fatalf("replay: got %s, want REPLAYED", again.Result)
	}

	got, err := c.GetFactor(ctx, alice, f.FactorID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != totpdv1.FactorState_FACTOR_STATE_ACTIVE || got.LastUsedAt.IsZero() {
		t.Fatalf("get: %+v", got)
	}
	list, err := c.ListFactors(ctx, alice, false)
	if err != nil || len(list) != 1 || list[0].FactorID != f.FactorID {
		t.Fatalf("list: %+v %v", list, err)
	}

	d, err := c.ForceDisable(ctx, alice, f.FactorID)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Outcome.Valid() || len(d.Factors) != 1 || d.Factors[0].State != totpdv1.FactorState_FACTOR_STATE_DISABLED {
		t.Fatalf("disable: %+v", d)
	}
	if list, _ := c.ListFactors(ctx, alice, false); len(list) != 0 {
		t.Fatalf("active factors after disable: %+v", list)
	}
	if list, _ := c.ListFactors(ctx, alice, true); len(list) != 1 {
		t.Fatalf("all factors after disable: %+v", list)
	}
}

func TestDisableWithCurrentCode(t *testing.T) {
	c := newClient(t)
	carol := account("carol")
	e := enrollActive(t, c, carol)
	d, err := c.Disable(context.Background(), carol, e.Factor.FactorID, nextCode(t, e))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Outcome.Valid() || len(d.Factors) != 1 || d.Factors[0].FactorID != e.Factor.FactorID {
		t.Fatalf("disable: %+v", d)
	}
}

func TestBatchVerify(t *testing.T) {
	c := newClient(t)
	bob := account("bob")
	e := enrollActive(t, c, bob)
	next := nextCode(t, e)
	res, err := c.BatchVerify(context.Background(), []totpd.BatchItem{
		{AccountID: bob, Code: next},
		{AccountID: bob, Code: next, FactorID: e.Factor.FactorID},
		{AccountID: bob, Code: "12a456"},
		{AccountID: account("nobody"), Code: "123456"},
	})
	if status.Code(err) == codes.Unimplemented {
		t.Skip("server does not implement BatchVerify yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("got %d results, want 4", len(res))
	}
	if res[0].Outcome == nil || !res[0].Outcome.Valid() || res[0].Outcome.FactorID != e.Factor.FactorID {
		t.Fatalf("item 0: %+v", res[0])
	}
	if res[1].Outcome == nil || res[1].Outcome.Result != totpd.VerifyReplayed {
		t.Fatalf("item 1: %+v", res[1])
	}
	if res[2].Err == nil || res[2].Err.Code != codes.InvalidArgument || res[2].Err.Reason != totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE {
		t.Fatalf("item 2: %+v", res[2])
	}
	if res[3].Err == nil || res[3].Err.Code != codes.NotFound || res[3].Err.Reason != totpdv1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND {
		t.Fatalf("item 3: %+v", res[3])
	}
}

func TestMalformedCodeIsATypedError(t *testing.T) {
	c := newClient(t)
	dave := account("dave")
	enrollActive(t, c, dave)
	_, err := c.Verify(context.Background(), dave, "12a456")
	var terr *totpd.Error
	if !errors.As(err, &terr) {
		t.Fatalf("want *totpd.Error, got %T %v", err, err)
	}
	if terr.Code != codes.InvalidArgument || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE || terr.Field != "code" {
		t.Fatalf("error: %+v", terr)
	}
	if status.Code(err) != codes.InvalidArgument || totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE {
		t.Fatal("status.Code / ReasonOf do not see the error")
	}
	if strings.Contains(err.Error(), "12a456") {
		t.Fatal("the code is echoed in the error")
	}
}

func TestUnknownFactorIsNotFound(t *testing.T) {
	c := newClient(t)
	_, err := c.GetFactor(context.Background(), account("erin"), uuid.NewString())
	if status.Code(err) != codes.NotFound || totpd.ReasonOf(err) == totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Fatalf("got %v", err)
	}
}

func TestUnavailableIsRetriedThenReturned(t *testing.T) {
	var calls atomic.Int32
	count := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c, err := totpd.NewClient("127.0.0.1:1", totpd.WithInsecure(), totpd.WithMaxAttempts(3),
		totpd.WithBackoff(10*time.Millisecond, 20*time.Millisecond), totpd.WithDialOptions(count))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Verify(context.Background(), "x", "123456")
	if status.Code(err) != codes.Unavailable || totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Fatalf("got %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}

func TestInvalidArgumentIsNotRetried(t *testing.T) {
	var calls atomic.Int32
	count := grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		calls.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c, err := totpd.NewClient(target, totpd.WithInsecure(), totpd.WithDialOptions(count))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Verify(context.Background(), account("frank"), "12a456"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestSHA512EightDigits(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	heidi := account("heidi")
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: heidi, Label: "Work phone",
		Algorithm: totpdv1.Algorithm_ALGORITHM_SHA512, Digits: 8, Period: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if e.Factor.Algorithm != totpdv1.Algorithm_ALGORITHM_SHA512 || e.Factor.Digits != 8 || e.Factor.Period != 45*time.Second {
		t.Fatalf("factor: %+v", e.Factor)
	}
	conf, err := c.Confirm(ctx, heidi, e.Factor.FactorID, code(t, e, time.Now()))
	if err != nil || !conf.Outcome.Valid() {
		t.Fatalf("confirm: %+v %v", conf, err)
	}
	v, err := c.Verify(ctx, heidi, nextCode(t, e))
	if err != nil || !v.Valid() {
		t.Fatalf("verify: %+v %v", v, err)
	}
}
