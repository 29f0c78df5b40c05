package totpd_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// lifecycleCalls are the four lifecycle RPCs as the client makes them.
var lifecycleCalls = []struct {
	method     string
	idempotent bool // Unlock; the others act on every attempt, without a request_id
	call       func(*totpd.Client) error
}{
	{"GenerateRecoveryCodes", false, func(c *totpd.Client) error {
		_, err := c.GenerateRecoveryCodes(context.Background(), "alice")
		return err
	}},
	{"VerifyRecoveryCode", false, func(c *totpd.Client) error {
		_, err := c.VerifyRecoveryCode(context.Background(), "alice", "k7q2-9xmf-w4c8")
		return err
	}},
	{"Unlock", true, func(c *totpd.Client) error {
		_, err := c.Unlock(context.Background(), "alice", "")
		return err
	}},
	{"Resync", false, func(c *totpd.Client) error {
		_, err := c.Resync(context.Background(), "alice", "f-1", "123456", "654321")
		return err
	}},
}

func TestLifecycleCallsSendTheirFieldsAndMapTheAnswers(t *testing.T) {
	fake, addr := startFake(t)
	fake.setOutcome(&totpdv1.VerifyOutcome{Result: totpdv1.VerifyResult_VERIFY_RESULT_VALID, StepOffset: 10, AttemptsLeft: 10})
	c := fastClient(t, addr)
	ctx := context.Background()
	generatedAt := time.Unix(1_700_000_000, 0).UTC()

	rc, err := c.GenerateRecoveryCodes(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rc.Codes, []string{"k7q2-9xmf-w4c8", "0abc-defg-hjkm"}) ||
		rc.Status != (totpd.RecoveryCodesStatus{Remaining: 2, Issued: 2, GeneratedAt: generatedAt}) {
		t.Fatalf("generate: %+v", rc)
	}
	if printed := fmt.Sprintf("%v %+v", rc, *rc); strings.Contains(printed, "k7q2") {
		t.Fatalf("printing RecoveryCodes shows the codes: %s", printed)
	}
	v, err := c.VerifyRecoveryCode(ctx, "alice", "K7Q2 9XMF W4C8")
	if err != nil {
		t.Fatal(err)
	}
	if !v.Outcome.Valid() || v.Outcome.AttemptsLeft != 10 || v.Status != (totpd.RecoveryCodesStatus{Remaining: 9, Issued: 10, GeneratedAt: generatedAt}) {
		t.Fatalf("verify recovery code: %+v", v)
	}
	u, err := c.Unlock(ctx, "alice", "f-2")
	if err != nil {
		t.Fatal(err)
	}
	if *u != (totpd.UnlockResult{LockLifted: true, ConsecutiveFailuresCleared: 12, FactorsCleared: 2, BudgetRefilled: true}) {
		t.Fatalf("unlock: %+v", u)
	}
	r, err := c.Resync(ctx, "alice", "f-1", "123456", "654321")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Outcome.Valid() || r.Outcome.StepOffset != 10 || r.Factor.DriftSteps != 10 || r.Factor.FactorID != "f-1" {
		t.Fatalf("resync: %+v", r)
	}
	list, err := c.MFAStatus(ctx, "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Factors) != 1 || list.Factors[0].DriftSteps != -3 || list.RecoveryCodes.Remaining != 9 || list.RecoveryCodes.Issued != 10 {
		t.Fatalf("list: %+v", list)
	}
	plain, err := c.ListFactors(ctx, "alice", false) // the existing method is unchanged
	if err != nil || len(plain) != 1 || plain[0].DriftSteps != -3 {
		t.Fatalf("ListFactors: %+v %v", plain, err)
	}

	want := []proto.Message{
		&totpdv1.GenerateRecoveryCodesRequest{AccountId: "alice"},
		&totpdv1.VerifyRecoveryCodeRequest{AccountId: "alice", Code: "K7Q2 9XMF W4C8"},
		&totpdv1.UnlockRequest{AccountId: "alice", FactorId: "f-2"},
		&totpdv1.ResyncRequest{AccountId: "alice", FactorId: "f-1", Code1: "123456", Code2: "654321"},
		&totpdv1.ListFactorsRequest{AccountId: "alice", IncludeInactive: true},
		&totpdv1.ListFactorsRequest{AccountId: "alice"},
	}
	got := fake.requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i].(proto.Message), want[i]) {
			t.Fatalf("request %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// UNAVAILABLE, bare or STORE_UNAVAILABLE, may follow a commit whose response
// was lost: only the idempotent Unlock is retried after it.
func TestUnavailableIsRetriedOnlyByUnlock(t *testing.T) {
	for _, f := range []fail{{code: codes.Unavailable}, unavailable} {
		for _, m := range lifecycleCalls {
			fake, addr := startFake(t, f, f)
			err := m.call(fastClient(t, addr))
			attempts := len(fake.received())
			if m.idempotent {
				if err != nil || attempts != 3 {
					t.Fatalf("%s after %q: %v after %d attempts, want success after 3", m.method, f.reason, err, attempts)
				}
				continue
			}
			var terr *totpd.Error
			if !errors.As(err, &terr) || terr.Code != codes.Unavailable || attempts != 1 {
				t.Fatalf("%s after %q: %v after %d attempts, want UNAVAILABLE after 1", m.method, f.reason, err, attempts)
			}
		}
	}
}

// OVERLOADED is refused before any work: every lifecycle call retries it.
func TestLifecycleCallsRetryOverloaded(t *testing.T) {
	overloaded := fail{codes.ResourceExhausted, "ERROR_REASON_OVERLOADED", 0}
	for _, m := range lifecycleCalls {
		fake, addr := startFake(t, overloaded, overloaded)
		if err := m.call(fastClient(t, addr)); err != nil {
			t.Fatalf("%s: %v", m.method, err)
		}
		got := fake.received()
		if len(got) != 3 || got[2].method != m.method {
			t.Fatalf("%s: %+v, want 3 attempts", m.method, got)
		}
	}
}

func TestLifecycleErrorsAreTypedAndNotRetried(t *testing.T) {
	for _, f := range []fail{
		{codes.NotFound, "ERROR_REASON_ACCOUNT_NOT_FOUND", 0},
		{codes.InvalidArgument, "ERROR_REASON_MALFORMED_CODE", 0},
		{codes.ResourceExhausted, "ERROR_REASON_RATE_LIMITED", time.Second},
		{codes.PermissionDenied, "ERROR_REASON_PERMISSION_DENIED", 0},
	} {
		for _, m := range lifecycleCalls {
			fake, addr := startFake(t, f)
			err := m.call(fastClient(t, addr))
			var terr *totpd.Error
			if !errors.As(err, &terr) || terr.Code != f.code || terr.Reason.String() != f.reason {
				t.Fatalf("%s: got %v, want %s %s", m.method, err, f.code, f.reason)
			}
			if n := len(fake.received()); n != 1 {
				t.Fatalf("%s: %s retried (%d attempts)", m.method, f.reason, n)
			}
		}
	}
	_, addr := startFake(t, fail{codes.PermissionDenied, "ERROR_REASON_PERMISSION_DENIED", 0})
	if _, err := fastClient(t, addr).Unlock(context.Background(), "alice", ""); !errors.Is(err, totpd.ErrPermissionDenied) {
		t.Fatalf("Unlock without admin: %v, want ErrPermissionDenied", err)
	}
}
