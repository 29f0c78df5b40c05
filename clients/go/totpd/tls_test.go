package totpd_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// startMTLSTotpd writes throwaway certificates with the repository's
// `python -m tests.tls_certs DIR` and starts a totpd that speaks TLS only and
// requires a client certificate signed by that CA.
func startMTLSTotpd(t *testing.T) (addr, certs string) {
	t.Helper()
	root := repoRoot()
	certs = t.TempDir()
	gen := exec.Command(python(root), "-m", "tests.tls_certs", certs)
	gen.Dir = root
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("tests.tls_certs: %v\n%s", err, out)
	}
	addr, stop, err := startTotpd(t.TempDir(),
		"--tls-cert-file", filepath.Join(certs, "server.pem"),
		"--tls-key-file", filepath.Join(certs, "server.key"),
		"--tls-client-ca-file", filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr, certs
}

func TestMutualTLS(t *testing.T) {
	addr, certs := startMTLSTotpd(t)

	t.Run("enroll and list with a client certificate", func(t *testing.T) {
		c, err := totpd.NewClient(addr,
			totpd.WithRootCAFile(filepath.Join(certs, "ca.pem")),
			totpd.WithClientCertificate(filepath.Join(certs, "client.pem"), filepath.Join(certs, "client.key")),
			totpd.WithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx := context.Background()
		id := account("mtls")
		e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: id, Label: "Pixel 8"})
		if err != nil {
			t.Fatal(err)
		}
		if e.Factor.State != totpdv1.FactorState_FACTOR_STATE_PENDING {
			t.Fatalf("state = %v", e.Factor.State)
		}
		fs, err := c.ListFactors(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 || fs[0].FactorID != e.Factor.FactorID {
			t.Fatalf("listed %+v, enrolled %s", fs, e.Factor.FactorID)
		}
	})

	t.Run("no client certificate is UNAVAILABLE", func(t *testing.T) {
		c, err := totpd.NewClient(addr,
			totpd.WithRootCAFile(filepath.Join(certs, "ca.pem")),
			totpd.WithMaxAttempts(1),
			totpd.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.ListFactors(context.Background(), account("mtls-nocert"), false)
		t.Logf("refused: %v", err)
		var terr *totpd.Error
		if !errors.As(err, &terr) {
			t.Fatalf("want *totpd.Error, got %T %v", err, err)
		}
		if terr.Code != codes.Unavailable || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			t.Fatalf("got %v", terr)
		}
	})
}
