package totpd_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/totpd/totpd/clients/go/totpd"
)

// TestLiveAuditEventsListAnEnrollment runs against the suite's totpd (the
// implicit local caller holds admin). It skips, saying so, while the server
// answers ListAuditEvents UNIMPLEMENTED (before the audit trail is merged).
func TestLiveAuditEventsListAnEnrollment(t *testing.T) {
	c := liveClient(t, target)
	ctx := context.Background()
	if _, err := c.ListAuditEvents(ctx, totpd.AuditFilter{}, 1, ""); err != nil {
		if status.Code(err) == codes.Unimplemented {
			t.Skip("this totpd does not serve ListAuditEvents yet")
		}
		t.Fatal(err)
	}
	account := "go-live-audit-" + t.Name()
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: account, Label: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	var got []totpd.AuditEvent
	for ev, err := range c.AuditEvents(ctx, totpd.AuditFilter{AccountID: account}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 1 || got[0].Method != "Enroll" || got[0].FactorID != e.Factor.FactorID || got[0].StatusCode != "OK" || got[0].Caller != "local" {
		t.Fatalf("events %+v", got)
	}
}
