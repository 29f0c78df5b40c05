package totpd_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// These run against the real totpd. The server keeps request ids (AIP-155)
// only from the release that added them; against an older one they skip,
// saying so, instead of failing.
const serverIgnoresRequestID = "this totpd ignores request_id (it enrolled twice under one id): " +
	"the server side of AIP-155 idempotency has not landed"

var (
	probeOnce sync.Once
	probeKept bool
	probeErr  error
)

// requestIDsKept reports whether the server keeps request ids: one id reused
// for a different enrollment is refused with REQUEST_ID_REUSED by a server
// that does, enrolled by one that does not.
func requestIDsKept(t *testing.T) bool {
	t.Helper()
	probeOnce.Do(func() {
		c, err := totpd.NewClient(target, totpd.WithInsecure(), totpd.WithTimeout(10*time.Second))
		if err != nil {
			probeErr = err
			return
		}
		defer c.Close()
		ctx, probe, rid := context.Background(), account("probe"), uuid.NewString()
		if _, probeErr = c.Enroll(ctx, totpd.EnrollParams{AccountID: probe, Label: "Pixel 8"}, totpd.WithRequestID(rid)); probeErr != nil {
			return
		}
		_, err = c.Enroll(ctx, totpd.EnrollParams{AccountID: probe, Label: "Work phone"}, totpd.WithRequestID(rid))
		var terr *totpd.Error
		switch {
		case err == nil:
			probeKept = false
		case errors.As(err, &terr) && terr.Code == codes.InvalidArgument &&
			terr.Reason == totpdv1.ErrorReason_ERROR_REASON_REQUEST_ID_REUSED && terr.Field == "request_id":
			probeKept = true
		default:
			probeErr = err
		}
	})
	if probeErr != nil {
		t.Fatalf("request id probe: %v", probeErr)
	}
	return probeKept
}

// loseFirstEnrollResponse lets every attempt reach the server but answers the
// first Enroll with UNAVAILABLE, as a connection dropped after the server
// acted would; it records the request ids and the dropped response.
type loseFirstEnrollResponse struct {
	mu         sync.Mutex
	requestIDs []string
	dropped    *totpdv1.EnrollResponse
}

func (l *loseFirstEnrollResponse) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !strings.HasSuffix(method, "/Enroll") {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requestIDs = append(l.requestIDs, req.(*totpdv1.EnrollRequest).GetRequestId())
	if err == nil && l.dropped == nil {
		l.dropped = proto.Clone(reply.(*totpdv1.EnrollResponse)).(*totpdv1.EnrollResponse)
		return status.Error(codes.Unavailable, "connection lost after the server answered")
	}
	return err
}

func TestEnrollRetriedAfterALostResponseReturnsTheFirstFactor(t *testing.T) {
	kept := requestIDsKept(t)
	lose := &loseFirstEnrollResponse{}
	c, err := totpd.NewClient(target, totpd.WithInsecure(), totpd.WithTimeout(10*time.Second),
		totpd.WithBackoff(10*time.Millisecond, 20*time.Millisecond), totpd.WithDialOptions(grpc.WithUnaryInterceptor(lose.intercept)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, alice := context.Background(), account("alice")
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: alice, Label: "Pixel 8"})
	// Without server support the retry enrolls again and collides with the first.
	if err != nil && (kept || totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_LABEL_TAKEN) {
		t.Fatal(err)
	}
	if len(lose.requestIDs) != 2 || lose.requestIDs[0] == "" || lose.requestIDs[0] != lose.requestIDs[1] {
		t.Fatalf("the retry must carry the first attempt's request_id: %q", lose.requestIDs)
	}
	if !kept {
		t.Skip(serverIgnoresRequestID)
	}
	stored, err := c.ListFactors(ctx, alice, true)
	if err != nil {
		t.Fatal(err)
	}
	first := lose.dropped.GetFactor().GetFactorId()
	if len(stored) != 1 || stored[0].FactorID != first || e.Factor.FactorID != first || e.SecretBase32 != lose.dropped.GetSecretBase32() {
		t.Fatalf("stored %+v, got %s, first attempt made %s", stored, e.Factor.FactorID, first)
	}
}

func TestOneRequestIDEnrollsOnce(t *testing.T) {
	if !requestIDsKept(t) {
		t.Skip(serverIgnoresRequestID)
	}
	c := newClient(t)
	ctx, bob, rid := context.Background(), account("bob"), uuid.NewString()
	p := totpd.EnrollParams{AccountID: bob, Label: "Pixel 8"}
	first, err := c.Enroll(ctx, p, totpd.WithRequestID(rid))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Enroll(ctx, p, totpd.WithRequestID(rid))
	if err != nil {
		t.Fatal(err)
	}
	if again.Factor.FactorID != first.Factor.FactorID || again.SecretBase32 != first.SecretBase32 {
		t.Fatalf("first %s, again %s", first.Factor.FactorID, again.Factor.FactorID)
	}
	if fs, err := c.ListFactors(ctx, bob, true); err != nil || len(fs) != 1 {
		t.Fatalf("%+v %v", fs, err)
	}
}

func TestARepeatedConfirmReturnsTheFirstVerdictInsteadOfReplayed(t *testing.T) {
	if !requestIDsKept(t) {
		t.Skip(serverIgnoresRequestID)
	}
	c := newClient(t)
	ctx, carol, rid := context.Background(), account("carol"), uuid.NewString()
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: carol, Label: "Pixel 8"})
	if err != nil {
		t.Fatal(err)
	}
	now := code(t, e, time.Now())
	for i := range 2 {
		conf, err := c.Confirm(ctx, carol, e.Factor.FactorID, now, totpd.WithRequestID(rid))
		if err != nil || !conf.Outcome.Valid() || conf.Factor.State != totpdv1.FactorState_FACTOR_STATE_ACTIVE {
			t.Fatalf("confirm %d: %+v %v", i+1, conf, err)
		}
	}
}

func TestARepeatedForceDisableReturnsTheFirstResult(t *testing.T) {
	if !requestIDsKept(t) {
		t.Skip(serverIgnoresRequestID)
	}
	c := newClient(t)
	ctx, dave, rid := context.Background(), account("dave"), uuid.NewString()
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: dave, Label: "Pixel 8"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		d, err := c.ForceDisable(ctx, dave, e.Factor.FactorID, totpd.WithRequestID(rid))
		if err != nil || !d.Outcome.Valid() || len(d.Factors) != 1 || d.Factors[0].FactorID != e.Factor.FactorID {
			t.Fatalf("disable %d: %+v %v", i+1, d, err)
		}
	}
}
