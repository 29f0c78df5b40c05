package totpd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// fastClient retries after 1-2 ms of its own backoff, so any longer wait
// between two attempts comes from the server's RetryInfo.
func fastClient(t *testing.T, addr string, opts ...totpd.Option) *totpd.Client {
	t.Helper()
	opts = append([]totpd.Option{totpd.WithInsecure(), totpd.WithTimeout(10 * time.Second),
		totpd.WithBackoff(time.Millisecond, 2*time.Millisecond)}, opts...)
	c, err := totpd.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mutations are the calls that carry a request_id, by the RPC they make.
var mutations = []struct {
	method string
	call   func(*totpd.Client, ...totpd.CallOption) error
}{
	{"Enroll", func(c *totpd.Client, o ...totpd.CallOption) error {
		_, err := c.Enroll(context.Background(), totpd.EnrollParams{AccountID: "alice", Label: "Pixel 8"}, o...)
		return err
	}},
	{"ConfirmEnrollment", func(c *totpd.Client, o ...totpd.CallOption) error {
		_, err := c.Confirm(context.Background(), "alice", "f-1", "123456", o...)
		return err
	}},
	{"Disable", func(c *totpd.Client, o ...totpd.CallOption) error {
		_, err := c.Disable(context.Background(), "alice", "f-1", "123456", o...)
		return err
	}},
	{"Disable", func(c *totpd.Client, o ...totpd.CallOption) error {
		_, err := c.ForceDisable(context.Background(), "alice", "f-1", o...)
		return err
	}},
}

func TestAGeneratedRequestIDIsSentAndReusedByEveryRetryOfTheCall(t *testing.T) {
	for _, m := range mutations {
		fake, addr := startFake(t, unavailable, unavailable)
		c := fastClient(t, addr)
		if err := m.call(c); err != nil {
			t.Fatalf("%s: %v", m.method, err)
		}
		if err := m.call(c); err != nil {
			t.Fatalf("%s: %v", m.method, err)
		}
		got := fake.received()
		if len(got) != 4 {
			t.Fatalf("%s: %d attempts, want 4", m.method, len(got))
		}
		for _, r := range got {
			if r.method != m.method {
				t.Fatalf("got %s, want %s", r.method, m.method)
			}
		}
		if got[0].requestID != got[1].requestID || got[1].requestID != got[2].requestID {
			t.Fatalf("%s: the retries of one call must carry its request_id: %+v", m.method, got)
		}
		if id, err := uuid.Parse(got[0].requestID); err != nil || id.Version() != 4 {
			t.Fatalf("%s: request_id %q is not a UUID4 (%v)", m.method, got[0].requestID, err)
		}
		if got[3].requestID == got[0].requestID {
			t.Fatalf("%s: a new call must get a new request_id", m.method)
		}
	}
}

func TestARequestIDGivenByTheCallerIsSentOnEveryAttempt(t *testing.T) {
	for _, m := range mutations {
		fake, addr := startFake(t, unavailable)
		if err := m.call(fastClient(t, addr), totpd.WithRequestID("checkout-42")); err != nil {
			t.Fatalf("%s: %v", m.method, err)
		}
		got := fake.received()
		if len(got) != 2 || got[0].requestID != "checkout-42" || got[1].requestID != "checkout-42" {
			t.Fatalf("%s: %+v", m.method, got)
		}
	}
}

func TestAnEmptyRequestIDMeansAGeneratedOne(t *testing.T) {
	fake, addr := startFake(t)
	if err := mutations[0].call(fastClient(t, addr), totpd.WithRequestID("")); err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(fake.received()[0].requestID); err != nil {
		t.Fatalf("request_id %q: %v", fake.received()[0].requestID, err)
	}
}

func TestOverloadedIsRetriedAfterAtLeastTheServersRetryDelay(t *testing.T) {
	delay := 200 * time.Millisecond
	fake, addr := startFake(t, fail{codes.ResourceExhausted, "ERROR_REASON_OVERLOADED", delay})
	out, err := fastClient(t, addr).Verify(context.Background(), "alice", "123456")
	if err != nil || !out.Valid() {
		t.Fatalf("%+v %v", out, err)
	}
	got := fake.received()
	if len(got) != 2 {
		t.Fatalf("%d attempts, want 2", len(got))
	}
	if gap := got[1].at.Sub(got[0].at); gap < delay {
		t.Fatalf("retried after %v, before the server's %v", gap, delay)
	}
}

func TestOverloadedWhoseDelayOutlastsTheDeadlineIsReturnedAtOnce(t *testing.T) {
	fake, addr := startFake(t, fail{codes.ResourceExhausted, "ERROR_REASON_OVERLOADED", 30 * time.Second})
	_, err := fastClient(t, addr, totpd.WithTimeout(2*time.Second)).Verify(context.Background(), "alice", "123456")
	var terr *totpd.Error
	if !errors.As(err, &terr) || terr.Code != codes.ResourceExhausted ||
		terr.Reason != totpdv1.ErrorReason_ERROR_REASON_OVERLOADED || terr.RetryAfter != 30*time.Second {
		t.Fatalf("got %#v", err)
	}
	if n := len(fake.received()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestRateLimitedIsNotRetriedAndCarriesTheServersDelay(t *testing.T) {
	fake, addr := startFake(t, fail{codes.ResourceExhausted, "ERROR_REASON_RATE_LIMITED", 10 * time.Millisecond})
	_, err := fastClient(t, addr).Verify(context.Background(), "alice", "123456")
	var terr *totpd.Error
	if !errors.As(err, &terr) || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_RATE_LIMITED || terr.RetryAfter != 10*time.Millisecond {
		t.Fatalf("got %#v", err)
	}
	if n := len(fake.received()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestResourceExhaustedWithoutATotpdReasonIsNotRetried(t *testing.T) {
	fake, addr := startFake(t, fail{code: codes.ResourceExhausted})
	err := mutations[0].call(fastClient(t, addr))
	var terr *totpd.Error
	if !errors.As(err, &terr) || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED || terr.RetryAfter != 0 {
		t.Fatalf("got %#v", err)
	}
	if n := len(fake.received()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

func TestDeadlineExceededAndRequestIDReusedAreTypedAndNotRetried(t *testing.T) {
	for _, f := range []fail{
		{code: codes.DeadlineExceeded, reason: "ERROR_REASON_DEADLINE_EXCEEDED"},
		{code: codes.InvalidArgument, reason: "ERROR_REASON_REQUEST_ID_REUSED"},
	} {
		fake, addr := startFake(t, f)
		err := mutations[2].call(fastClient(t, addr))
		var terr *totpd.Error
		if !errors.As(err, &terr) || terr.Code != f.code || terr.Reason.String() != f.reason {
			t.Fatalf("got %#v, want %v %s", err, f.code, f.reason)
		}
		if n := len(fake.received()); n != 1 {
			t.Fatalf("%s: %d attempts, want 1", f.reason, n)
		}
	}
}

func TestVerifyRetriesUnavailableLikeBefore(t *testing.T) {
	fake, addr := startFake(t, unavailable)
	out, err := fastClient(t, addr).Verify(context.Background(), "alice", "123456")
	if err != nil || !out.Valid() || len(fake.received()) != 2 {
		t.Fatalf("%+v %v %+v", out, err, fake.received())
	}
}

func TestUnlockRequiredReachesTheOutcome(t *testing.T) {
	fake, addr := startFake(t)
	c := fastClient(t, addr)
	fake.setOutcome(&totpdv1.VerifyOutcome{Result: totpdv1.VerifyResult_VERIFY_RESULT_LOCKED, FactorId: "f-1", UnlockRequired: true})
	out, err := c.Verify(context.Background(), "alice", "123456")
	if err != nil || out.Result != totpd.VerifyLocked || !out.UnlockRequired || out.RetryAfter != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	fake.setOutcome(&totpdv1.VerifyOutcome{Result: totpdv1.VerifyResult_VERIFY_RESULT_LOCKED, RetryAfterSeconds: 60})
	out, err = c.Verify(context.Background(), "alice", "123456")
	if err != nil || out.UnlockRequired || out.RetryAfter != time.Minute {
		t.Fatalf("%+v %v", out, err)
	}
}
