package totpd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

const (
	liveWriter     = "totpd_go-live-writer-0123456789abcdef"
	liveReader     = "totpd_go-live-reader-0123456789abcdef"
	liveTwoTenants = "totpd_go-live-two-tenants-0123456789"
)

func callerEntry(name, token, tenants, permissions string) string {
	sum := sha256.Sum256([]byte(token))
	return fmt.Sprintf("[[callers]]\nname = %q\ntoken_sha256 = %q\ntenants = %s\npermissions = %s\n",
		name, hex.EncodeToString(sum[:]), tenants, permissions)
}

// startCallersTotpd starts a real totpd with a callers file: a writer
// (enroll, verify, read), a read-only caller and a read-only caller of two
// tenants, all by bearer token.
func startCallersTotpd(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "callers.toml")
	text := callerEntry("writer", liveWriter, `["default"]`, `["enroll", "verify", "read"]`) +
		callerEntry("reader", liveReader, `["default"]`, `["read"]`) +
		callerEntry("two-tenants", liveTwoTenants, `["default", "other"]`, `["read"]`)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, stop, err := startTotpd(t.TempDir(), "--callers-file", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

func liveClient(t *testing.T, addr string, opts ...totpd.Option) *totpd.Client {
	t.Helper()
	c, err := totpd.NewClient(addr, append([]totpd.Option{totpd.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLiveCallers(t *testing.T) {
	addr := startCallersTotpd(t)
	ctx := context.Background()

	writer := liveClient(t, addr, totpd.WithToken(liveWriter))
	e, err := writer.Enroll(ctx, totpd.EnrollParams{AccountID: "go-live-callers", Label: "phone"})
	if err != nil {
		t.Fatalf("allowed Enroll: %v", err)
	}
	if f, err := writer.GetFactor(ctx, "go-live-callers", e.Factor.FactorID); err != nil || f.Label != "phone" {
		t.Fatalf("allowed GetFactor: %v %+v", err, f)
	}
	two := liveClient(t, addr, totpd.WithToken(liveTwoTenants), totpd.WithTenant("default"))
	if fs, err := two.ListFactors(ctx, "go-live-callers", true); err != nil || len(fs) != 1 {
		t.Fatalf("allowed ListFactors naming its tenant: %v %d", err, len(fs))
	}

	reader := liveClient(t, addr, totpd.WithToken(liveReader), totpd.WithMaxAttempts(3))
	_, err = reader.Enroll(ctx, totpd.EnrollParams{AccountID: "go-live-callers-2"})
	if !errors.Is(err, totpd.ErrPermissionDenied) || totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED {
		t.Fatalf("read-only Enroll: %v", err)
	}
	if strings.Contains(err.Error(), liveReader) {
		t.Fatal("the token is in the error")
	}
	// Unlock is an operator's action: enroll and verify are not enough.
	if _, err := writer.Unlock(ctx, "go-live-callers", ""); !errors.Is(err, totpd.ErrPermissionDenied) {
		t.Fatalf("Unlock without admin: %v", err)
	}

	for _, opts := range [][]totpd.Option{{totpd.WithToken("totpd_not-a-known-token-000000000")}, nil} {
		_, err = liveClient(t, addr, opts...).ListFactors(ctx, "go-live-callers", false)
		if !errors.Is(err, totpd.ErrUnauthenticated) || totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED {
			t.Fatalf("unknown or no token: %v", err)
		}
	}

	_, err = liveClient(t, addr, totpd.WithToken(liveTwoTenants)).ListFactors(ctx, "go-live-callers", false)
	if !errors.Is(err, totpd.ErrTenantRequired) {
		t.Fatalf("two tenants, none named: %v", err)
	}
	_, err = liveClient(t, addr, totpd.WithToken(liveReader), totpd.WithTenant("other")).ListFactors(ctx, "go-live-callers", false)
	if !errors.Is(err, totpd.ErrPermissionDenied) {
		t.Fatalf("a tenant it does not hold: %v", err)
	}
}
