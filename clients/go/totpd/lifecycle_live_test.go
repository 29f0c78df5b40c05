package totpd_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

var recoveryCodeRE = regexp.MustCompile(`^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$`)

// wantError fails unless err is a *totpd.Error with this code and reason.
func wantError(t *testing.T, what string, err error, code codes.Code, reason totpdv1.ErrorReason) {
	t.Helper()
	var terr *totpd.Error
	if !errors.As(err, &terr) || terr.Code != code || terr.Reason != reason {
		t.Fatalf("%s: got %v, want %s %s", what, err, code, reason)
	}
}

func TestLiveRecoveryCodes(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	ivan := account("ivan")
	enrollActive(t, c, ivan)

	rc, err := c.GenerateRecoveryCodes(ctx, ivan)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, code := range rc.Codes {
		if !recoveryCodeRE.MatchString(code) || seen[code] {
			t.Fatalf("code %d of %d is malformed or repeated", len(seen), len(rc.Codes))
		}
		seen[code] = true
	}
	if len(rc.Codes) != 10 || rc.Status.Remaining != 10 || rc.Status.Issued != 10 || time.Since(rc.Status.GeneratedAt).Abs() > 5*time.Minute {
		t.Fatalf("%d codes, status %+v", len(rc.Codes), rc.Status)
	}

	v, err := c.VerifyRecoveryCode(ctx, ivan, rc.Codes[0])
	if err != nil || !v.Outcome.Valid() || v.Status.Remaining != 9 || v.Status.Issued != 10 {
		t.Fatalf("first use: %+v %v", v, err)
	}
	v, err = c.VerifyRecoveryCode(ctx, ivan, rc.Codes[0])
	if err != nil || v.Outcome.Result != totpd.VerifyReplayed || v.Status.Remaining != 9 {
		t.Fatalf("second use: %+v %v", v, err)
	}
	typed := strings.ToUpper(strings.ReplaceAll(rc.Codes[1], "-", ""))
	if v, err = c.VerifyRecoveryCode(ctx, ivan, typed); err != nil || !v.Outcome.Valid() || v.Status.Remaining != 8 {
		t.Fatalf("upper case without separators: %+v %v", v, err)
	}
	_, err = c.VerifyRecoveryCode(ctx, ivan, "not-a-code!")
	wantError(t, "malformed code", err, codes.InvalidArgument, totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE)
	if strings.Contains(err.Error(), "not-a-code") {
		t.Fatal("the code is echoed in the error")
	}

	list, err := c.MFAStatus(ctx, ivan, false)
	if err != nil || len(list.Factors) != 1 || list.RecoveryCodes.Remaining != 8 || list.RecoveryCodes.Issued != 10 {
		t.Fatalf("list: %+v %v", list, err)
	}

	if _, err := c.GenerateRecoveryCodes(ctx, ivan); err != nil {
		t.Fatal(err)
	}
	if v, err = c.VerifyRecoveryCode(ctx, ivan, rc.Codes[2]); err != nil || v.Outcome.Result != totpd.VerifyInvalid {
		t.Fatalf("a code of the replaced set: %+v %v", v, err)
	}

	_, err = c.GenerateRecoveryCodes(ctx, account("judy")) // no active factor
	wantError(t, "generate without a factor", err, codes.NotFound, totpdv1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND)
}

func TestLiveUnlockAfterALock(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	kim := account("kim")
	e := enrollActive(t, c, kim)
	wrong := code(t, e, time.Now().Add(-time.Hour))

	var locked *totpd.VerifyOutcome
	for range 12 { // backoff starts after the 3rd failure, the lock after the 10th
		v, err := c.Verify(ctx, kim, wrong)
		if err != nil {
			t.Fatal(err)
		}
		if v.Result == totpd.VerifyLocked {
			locked = &v
			break
		}
	}
	// Not "the next right code is LOCKED too": the backoff may end before that call
	// on a slow machine. What the unlock cleared is the server's own account.
	if locked == nil || locked.RetryAfter <= 0 {
		t.Fatalf("not locked (in backoff) after wrong codes: %+v", locked)
	}
	next := nextCode(t, e)

	u, err := c.Unlock(ctx, kim, "")
	if err != nil {
		t.Fatal(err)
	}
	if u.FactorsCleared != 1 || u.ConsecutiveFailuresCleared < 3 {
		t.Fatalf("unlock: %+v", u)
	}
	if v, err := c.Verify(ctx, kim, next); err != nil || !v.Valid() {
		t.Fatalf("after unlock: %+v %v", v, err)
	}
	_, err = c.Unlock(ctx, account("nobody"), "")
	wantError(t, "unlock of an unknown account", err, codes.NotFound, totpdv1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND)
}

// The app's clock runs 5 minutes ahead: Resync finds its two codes, stores
// the drift, and later codes from that clock verify.
func TestLiveResyncMeasuresTheDrift(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	leo := account("leo")
	e := enrollActive(t, c, leo)
	period := e.Factor.Period
	app := time.Now().Add(5 * time.Minute)

	code1, code2 := code(t, e, app), code(t, e, app.Add(period))
	r, err := c.Resync(ctx, leo, e.Factor.FactorID, code1, code2)
	if err != nil {
		t.Fatal(err)
	}
	drift := r.Factor.DriftSteps
	if !r.Outcome.Valid() || drift < 9 || drift > 12 || r.Outcome.StepOffset != drift || r.Factor.FactorID != e.Factor.FactorID {
		t.Fatalf("resync: %+v", r)
	}
	if f, err := c.GetFactor(ctx, leo, e.Factor.FactorID); err != nil || f.DriftSteps != drift {
		t.Fatalf("GetFactor after resync: %+v %v", f, err)
	}
	if v, err := c.Verify(ctx, leo, code(t, e, app.Add(2*period))); err != nil || !v.Valid() || v.StepOffset < drift || v.StepOffset > drift+2 {
		t.Fatalf("a code of the app's clock: %+v %v", v, err)
	}
	if r, err := c.Resync(ctx, leo, e.Factor.FactorID, code1, code2); err != nil || r.Outcome.Result != totpd.VerifyReplayed || r.Factor.DriftSteps != drift {
		t.Fatalf("the same pair again: %+v %v", r, err)
	}
	if v, err := c.Verify(ctx, leo, code(t, e, time.Now().Add(-period))); err != nil || v.Valid() {
		t.Fatalf("a code of the server's clock, outside the drifted window: %+v %v", v, err)
	}
	_, err = c.Resync(ctx, leo, e.Factor.FactorID, "12a456", code2)
	wantError(t, "malformed code1", err, codes.InvalidArgument, totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE)
}
