package totpd_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/totpd/totpd/clients/go/totpd"
)

// The service config of the README: round_robin over every address, and gRPC's
// own retry of UNAVAILABLE.
const replicaServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "totpd.v1.TotpService"}],
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`

// Two real servers with separate databases: where each enrollment landed is visible.
func TestRoundRobinSpreadsCallsOverReplicas(t *testing.T) {
	dir := t.TempDir()
	second, stop, err := startTotpd(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	// grpc-go has no ipv4: multi-address target: a manual resolver names the replicas
	// (a DNS name with several A records needs none: "dns:///totpd.internal:50051").
	replicas := manual.NewBuilderWithScheme("totpd-replicas")
	replicas.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: target}, {Addr: second}}})
	both, err := totpd.NewClient("totpd-replicas:///totpd", totpd.WithInsecure(),
		totpd.WithDialOptions(grpc.WithResolvers(replicas), grpc.WithDefaultServiceConfig(replicaServiceConfig)))
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accounts := make([]string, 6)
	for i := range accounts {
		accounts[i] = account("rr")
		if _, err := both.Enroll(ctx, totpd.EnrollParams{AccountID: accounts[i], Label: "Pixel 8"}); err != nil {
			t.Fatal(err)
		}
	}
	// Each got some (round_robin picks among the connections ready so far, so the
	// first calls may all go to the first one up), and every one landed once.
	total := 0
	for _, replica := range []string{target, second} {
		one, err := totpd.NewClient(replica, totpd.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		landed := 0
		for _, a := range accounts {
			factors, err := one.ListFactors(ctx, a, true)
			if err != nil {
				t.Fatal(err)
			}
			landed += len(factors)
		}
		one.Close()
		if landed == 0 {
			t.Errorf("replica %s got none of the 6 enrollments", replica)
		}
		total += landed
	}
	if total != len(accounts) {
		t.Errorf("%d factors found for %d enrollments", total, len(accounts))
	}
}
