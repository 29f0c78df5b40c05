package totpd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

const testToken = "tok_go_0123456789"

func TestTokenAndTenantAreSentOnEveryCallAndRetry(t *testing.T) {
	fake, addr := startFake(t, unavailable)
	c, err := totpd.NewClient(addr, totpd.WithInsecure(), totpd.WithToken(testToken),
		totpd.WithTenant("shop"), totpd.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Verify(ctx, "alice", "123456"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListAuditEvents(ctx, totpd.AuditFilter{}, 0, ""); err != nil {
		t.Fatal(err)
	}
	mds := fake.metadata()
	if len(mds) != 4 { // Verify twice (one retry), Enroll, ListAuditEvents
		t.Fatalf("%d calls", len(mds))
	}
	for i, md := range mds {
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+testToken {
			t.Fatalf("call %d: authorization %q", i, got)
		}
		if got := md.Get("x-totpd-tenant"); len(got) != 1 || got[0] != "shop" {
			t.Fatalf("call %d: tenant %q", i, got)
		}
	}
}

func TestNoTokenNoTenantSendsNeither(t *testing.T) {
	fake, addr := startFake(t)
	c, err := totpd.NewClient(addr, totpd.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Verify(context.Background(), "alice", "123456"); err != nil {
		t.Fatal(err)
	}
	md := fake.metadata()[0]
	if len(md.Get("authorization")) != 0 || len(md.Get("x-totpd-tenant")) != 0 {
		t.Fatalf("unexpected identity metadata: %v", md)
	}
}

func TestRefusedIdentitiesAreTypedAndNeverRetried(t *testing.T) {
	cases := []struct {
		fail     fail
		sentinel error
		reason   totpdv1.ErrorReason
	}{
		{fail{code: codes.Unauthenticated, reason: "ERROR_REASON_UNAUTHENTICATED"}, totpd.ErrUnauthenticated, totpdv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED},
		{fail{code: codes.PermissionDenied, reason: "ERROR_REASON_PERMISSION_DENIED"}, totpd.ErrPermissionDenied, totpdv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED},
		{fail{code: codes.InvalidArgument, reason: "ERROR_REASON_TENANT_REQUIRED"}, totpd.ErrTenantRequired, totpdv1.ErrorReason_ERROR_REASON_TENANT_REQUIRED},
		{fail{code: codes.Unauthenticated}, totpd.ErrUnauthenticated, totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED}, // a proxy's bare status
	}
	for _, tc := range cases {
		fake, addr := startFake(t, tc.fail, tc.fail, tc.fail)
		c, err := totpd.NewClient(addr, totpd.WithInsecure(), totpd.WithToken(testToken), totpd.WithMaxAttempts(4))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Verify(context.Background(), "alice", "123456")
		c.Close()
		if !errors.Is(err, tc.sentinel) || totpd.ReasonOf(err) != tc.reason {
			t.Fatalf("%v: got %v", tc.fail, err)
		}
		for _, other := range []error{totpd.ErrUnauthenticated, totpd.ErrPermissionDenied, totpd.ErrTenantRequired} {
			if other != tc.sentinel && errors.Is(err, other) {
				t.Fatalf("%v also matches %v", err, other)
			}
		}
		if n := len(fake.received()); n != 1 {
			t.Fatalf("%v: %d attempts, want 1", tc.fail, n)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Fatal("the token is in the error")
		}
	}
}

func TestATokenInPlaintextBeyondLoopbackIsRefusedUnlessAllowed(t *testing.T) {
	_, err := totpd.NewClient("totpd.internal:50051", totpd.WithInsecure(), totpd.WithToken(testToken))
	if err == nil || !strings.Contains(err.Error(), "refusing to send the token in plaintext") || strings.Contains(err.Error(), testToken) {
		t.Fatalf("got %v", err)
	}
	for _, opts := range [][]totpd.Option{
		{totpd.WithInsecure(), totpd.WithToken(testToken), totpd.WithTokenOverPlaintext()},
		{totpd.WithToken(testToken)}, // TLS
	} {
		c, err := totpd.NewClient("totpd.internal:50051", opts...)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	c, err := totpd.NewClient("localhost:50051", totpd.WithInsecure(), totpd.WithToken(testToken))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestMalformedTokenOrTenantIsRefusedWithoutEchoingIt(t *testing.T) {
	for _, bad := range []string{"", " padded", "line\nbreak", "naïve"} {
		for _, opt := range []totpd.Option{totpd.WithToken(bad), totpd.WithTenant(bad)} {
			_, err := totpd.NewClient("127.0.0.1:1", totpd.WithInsecure(), opt)
			if err == nil || (bad != "" && strings.Contains(err.Error(), bad)) {
				t.Fatalf("%q: got %v", bad, err)
			}
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:50051": true, "ipv4:127.0.0.1:50051": true, "[::1]:50051": true, "::1": true,
		"LOCALHOST:1": true, "dns:///localhost:50051": true, "unix:/run/totpd.sock": true,
		"10.0.0.5:50051": false, "dns:///totpd.internal:50051": false, "[2001:db8::1]:50051": false,
	} {
		if got := totpd.IsLoopback(target); got != want {
			t.Errorf("IsLoopback(%q) = %v", target, got)
		}
	}
}
