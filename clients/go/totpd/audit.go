package totpd

import (
	"context"
	"iter"
	"time"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// AuditFilter selects audit events; zero fields match anything. Since is
// inclusive, Until exclusive.
type AuditFilter struct {
	Tenant    string
	AccountID string
	Caller    string
	Method    string // an RPC name, e.g. "Verify"
	Since     time.Time
	Until     time.Time
}

// AuditEvent is one audited call: never a secret, a code, a URI or a token.
type AuditEvent struct {
	EventID   int64
	Time      time.Time
	Caller    string
	Tenant    string // "" for a call denied before its tenant was known
	Method    string
	AccountID string
	FactorID  string
	// VerifyResult is VerifyUnspecified for a call that decided no code.
	VerifyResult VerifyResult
	// ErrorReason is ERROR_REASON_UNSPECIFIED for a call that succeeded.
	ErrorReason totpdv1.ErrorReason
	StatusCode  string // the gRPC code's name: "OK", "PERMISSION_DENIED"...
	StepOffset  int
	RequestID   string
	Peer        string
}

// AuditPage is one page of events, oldest first. NextPageToken is "" on the
// last page.
type AuditPage struct {
	Events        []AuditEvent
	NextPageToken string
}

func unixMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func auditEventFromProto(e *totpdv1.AuditEvent) AuditEvent {
	reason := e.GetErrorReason()
	if _, known := totpdv1.ErrorReason_name[int32(reason)]; !known {
		reason = totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	return AuditEvent{
		EventID:      e.GetEventId(),
		Time:         time.UnixMicro(e.GetTimeUnixMicros()).UTC(),
		Caller:       e.GetCaller(),
		Tenant:       e.GetTenant(),
		Method:       e.GetMethod(),
		AccountID:    e.GetAccountId(),
		FactorID:     e.GetFactorId(),
		VerifyResult: verifyResultFromProto(e.GetVerifyResult()),
		ErrorReason:  reason,
		StatusCode:   e.GetStatusCode(),
		StepOffset:   int(e.GetStepOffset()),
		RequestID:    e.GetRequestId(),
		Peer:         e.GetPeer(),
	}
}

// ListAuditEvents returns one page of events, oldest first (it needs the
// admin permission). pageSize 0 means the server's default (100); pass the
// previous page's NextPageToken, with the same filter, for the next page, or
// use AuditEvents.
func (c *Client) ListAuditEvents(ctx context.Context, f AuditFilter, pageSize int, pageToken string) (*AuditPage, error) {
	r, err := call(ctx, c, c.rpc.ListAuditEvents, &totpdv1.ListAuditEventsRequest{
		Tenant:              f.Tenant,
		AccountId:           f.AccountID,
		Caller:              f.Caller,
		Method:              f.Method,
		StartTimeUnixMicros: unixMicros(f.Since),
		EndTimeUnixMicros:   unixMicros(f.Until),
		PageSize:            uint32(max(pageSize, 0)),
		PageToken:           pageToken,
	})
	if err != nil {
		return nil, err
	}
	page := &AuditPage{Events: make([]AuditEvent, 0, len(r.GetEvents())), NextPageToken: r.GetNextPageToken()}
	for _, e := range r.GetEvents() {
		page.Events = append(page.Events, auditEventFromProto(e))
	}
	return page, nil
}

// AuditEvents yields every matching event, oldest first, fetching page after
// page (each page one call with its own deadline). It stops at the first
// error, which it yields; break out of the loop to stop early.
//
//	for ev, err := range c.AuditEvents(ctx, totpd.AuditFilter{AccountID: "alice"}) {
//		if err != nil { ... }
//	}
func (c *Client) AuditEvents(ctx context.Context, f AuditFilter) iter.Seq2[AuditEvent, error] {
	return func(yield func(AuditEvent, error) bool) {
		token := ""
		for {
			page, err := c.ListAuditEvents(ctx, f, 0, token)
			if err != nil {
				yield(AuditEvent{}, err)
				return
			}
			for _, e := range page.Events {
				if !yield(e, nil) {
					return
				}
			}
			if token = page.NextPageToken; token == "" {
				return
			}
		}
	}
}
