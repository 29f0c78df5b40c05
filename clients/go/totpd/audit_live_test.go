package totpd_test

import (
	"context"
	"testing"

	"github.com/totpd/totpd/clients/go/totpd"
)

// TestLiveAuditEventsListAnEnrollment runs against the suite's totpd (the
// implicit local caller holds admin).
func TestLiveAuditEventsListAnEnrollment(t *testing.T) {
	c := liveClient(t, target)
	ctx := context.Background()
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
