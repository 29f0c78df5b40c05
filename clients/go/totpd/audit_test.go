package totpd_test

import (
	"context"
	"testing"
	"time"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

const t0 = int64(1_764_662_400_123_456) // 2025-12-02 08:00:00.123456 UTC, in µs

func auditEvents(n int) []*totpdv1.AuditEvent {
	out := make([]*totpdv1.AuditEvent, n)
	for i := range out {
		out[i] = &totpdv1.AuditEvent{EventId: int64(i + 1), TimeUnixMicros: t0 + int64(i), Caller: "payments",
			Method: "Verify", VerifyResult: totpdv1.VerifyResult_VERIFY_RESULT_VALID, StatusCode: "OK"}
	}
	return out
}

func TestListAuditEventsSendsTheFilterAndDecodesAnEvent(t *testing.T) {
	fake, addr := startFake(t)
	fake.audit = []*totpdv1.AuditEvent{{EventId: 7, TimeUnixMicros: t0, Caller: "console", Method: "Enroll",
		ErrorReason: totpdv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, StatusCode: "PERMISSION_DENIED"}}
	c, err := totpd.NewClient(addr, totpd.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	since := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	page, err := c.ListAuditEvents(context.Background(), totpd.AuditFilter{Tenant: "shop", AccountID: "alice",
		Caller: "console", Method: "Enroll", Since: since}, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	rq := fake.auditRq[0]
	if rq.GetTenant() != "shop" || rq.GetAccountId() != "alice" || rq.GetCaller() != "console" || rq.GetMethod() != "Enroll" ||
		rq.GetStartTimeUnixMicros() != 1_764_547_200_000_000 || rq.GetEndTimeUnixMicros() != 0 || rq.GetPageSize() != 10 {
		t.Fatalf("request %v", rq)
	}
	if page.NextPageToken != "" || len(page.Events) != 1 {
		t.Fatalf("page %+v", page)
	}
	ev := page.Events[0]
	want := totpd.AuditEvent{EventID: 7, Time: time.Date(2025, 12, 2, 8, 0, 0, 123456000, time.UTC), Caller: "console",
		Method: "Enroll", ErrorReason: totpdv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED, StatusCode: "PERMISSION_DENIED"}
	if ev != want {
		t.Fatalf("event %+v", ev)
	}
}

func TestAuditEventsFollowsThePageTokensAndStopsWhenAsked(t *testing.T) {
	fake, addr := startFake(t)
	fake.audit = auditEvents(230)
	c, err := totpd.NewClient(addr, totpd.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ids []int64
	for ev, err := range c.AuditEvents(context.Background(), totpd.AuditFilter{Method: "Verify"}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.EventID)
	}
	if len(ids) != 230 || ids[0] != 1 || ids[229] != 230 {
		t.Fatalf("%d events", len(ids))
	}
	if n := len(fake.auditRq); n != 3 || fake.auditRq[1].GetPageToken() != "100" || fake.auditRq[2].GetMethod() != "Verify" {
		t.Fatalf("%d pages", n)
	}
	n := 0
	for range c.AuditEvents(context.Background(), totpd.AuditFilter{}) {
		if n++; n == 5 {
			break
		}
	}
	if len(fake.auditRq) != 4 {
		t.Fatalf("breaking early fetched %d pages in all", len(fake.auditRq))
	}
}
