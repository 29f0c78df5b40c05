package totpd

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// Domain is the google.rpc.ErrorInfo domain of totpd's errors.
const Domain = "totpd.v1"

// Error is a failed totpd call: the gRPC code plus the machine-readable
// reason and field decoded from the google.rpc.ErrorInfo in the status
// details. Use errors.As to get it:
//
//	var terr *totpd.Error
//	if errors.As(err, &terr) && terr.Reason == totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE { ... }
//
// A wrong or reused code is never an error: see VerifyOutcome.
type Error struct {
	Code codes.Code
	// Reason is ERROR_REASON_UNSPECIFIED when the status had no totpd
	// ErrorInfo (a transport failure, a deadline) or a reason newer than
	// this client.
	Reason   totpdv1.ErrorReason
	Field    string
	Metadata map[string]string
	Message  string
	// RetryAfter is the wait the server asked for in a google.rpc.RetryInfo
	// detail (OVERLOADED, RATE_LIMITED); zero when the status carried none.
	RetryAfter time.Duration
	status     *status.Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("totpd: %s %s: %s", e.Code, e.Reason, e.Message)
}

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// Is matches another *Error with the same Code and Reason, so sentinel
// values such as &Error{Code: codes.NotFound, Reason: ...} work with errors.Is.
func (e *Error) Is(target error) bool {
	if k, ok := target.(*kind); ok {
		return k.match(e)
	}
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code && t.Reason == e.Reason
}

// kind is a sentinel matching a class of *Error in errors.Is.
type kind struct {
	name  string
	match func(*Error) bool
}

func (k *kind) Error() string { return "totpd: " + k.name }

// Sentinels of a refused identity, for errors.Is. None is ever retried.
var (
	// ErrUnauthenticated: no credential, or one the server does not know
	// (code UNAUTHENTICATED, reason ERROR_REASON_UNAUTHENTICATED; a proxy's
	// bare UNAUTHENTICATED matches too). Fix the token or certificate.
	ErrUnauthenticated error = &kind{"unauthenticated", func(e *Error) bool { return e.Code == codes.Unauthenticated }}
	// ErrPermissionDenied: a known caller without the permission, or without
	// the tenant it named (code PERMISSION_DENIED). Nothing was read or written.
	ErrPermissionDenied error = &kind{"permission denied", func(e *Error) bool { return e.Code == codes.PermissionDenied }}
	// ErrTenantRequired: the caller holds several tenants and named none
	// (INVALID_ARGUMENT, reason ERROR_REASON_TENANT_REQUIRED): use WithTenant.
	ErrTenantRequired error = &kind{"tenant required", func(e *Error) bool {
		return e.Reason == totpdv1.ErrorReason_ERROR_REASON_TENANT_REQUIRED
	}}
)

// ReasonOf returns the totpd reason of err, or ERROR_REASON_UNSPECIFIED.
func ReasonOf(err error) totpdv1.ErrorReason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// FromError decodes a gRPC error into *Error. nil stays nil; an error
// without a gRPC status becomes codes.Unknown.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	st, _ := status.FromError(err)
	e := &Error{
		Code:    st.Code(),
		Reason:  totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED,
		Message: st.Message(),
		status:  st,
	}
	foundInfo := false
	for _, d := range st.Details() {
		switch detail := d.(type) {
		case *errdetails.RetryInfo:
			e.RetryAfter = max(detail.GetRetryDelay().AsDuration(), 0)
		case *errdetails.ErrorInfo:
			if foundInfo || detail.GetDomain() != Domain {
				continue
			}
			foundInfo = true
			if v, known := totpdv1.ErrorReason_value[detail.GetReason()]; known {
				e.Reason = totpdv1.ErrorReason(v)
			}
			e.Metadata = detail.GetMetadata()
			e.Field = detail.GetMetadata()["field"]
		}
	}
	return e
}

func itemError(ie *totpdv1.ItemError) *Error {
	reason := ie.GetReason()
	if _, known := totpdv1.ErrorReason_name[int32(reason)]; !known {
		reason = totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	e := &Error{
		Code:    codes.Code(ie.GetCode()),
		Reason:  reason,
		Field:   ie.GetField(),
		Message: ie.GetMessage(),
	}
	if e.Field != "" {
		e.Metadata = map[string]string{"field": e.Field}
	}
	return e
}
