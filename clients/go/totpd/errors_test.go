package totpd_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

func richErr(t *testing.T, domain, reason string) error {
	t.Helper()
	st, err := status.New(codes.InvalidArgument, "bad code").WithDetails(&errdetails.ErrorInfo{
		Domain: domain, Reason: reason, Metadata: map[string]string{"field": "code"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestFromErrorDecodesReason(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", totpd.FromError(richErr(t, "totpd.v1", "ERROR_REASON_MALFORMED_CODE")))
	var terr *totpd.Error
	if !errors.As(err, &terr) {
		t.Fatal("errors.As failed")
	}
	if terr.Code != codes.InvalidArgument || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE || terr.Field != "code" {
		t.Fatalf("%+v", terr)
	}
	if !errors.Is(err, &totpd.Error{Code: codes.InvalidArgument, Reason: totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE}) {
		t.Fatal("errors.Is with a sentinel failed")
	}
	if status.Code(terr) != codes.InvalidArgument {
		t.Fatal("GRPCStatus not honoured")
	}
}

func TestFromErrorIgnoresForeignAndUnknownReasons(t *testing.T) {
	for _, c := range [][2]string{{"example.com", "ERROR_REASON_MALFORMED_CODE"}, {"totpd.v1", "ERROR_REASON_FROM_THE_FUTURE"}} {
		err := totpd.FromError(richErr(t, c[0], c[1]))
		if totpd.ReasonOf(err) != totpdv1.ErrorReason_ERROR_REASON_UNSPECIFIED || status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: %v", c, err)
		}
	}
	if totpd.FromError(nil) != nil {
		t.Fatal("nil must stay nil")
	}
	if status.Code(totpd.FromError(errors.New("boom"))) != codes.Unknown {
		t.Fatal("plain error must be Unknown")
	}
}

func TestFromErrorDecodesTheNewReasons(t *testing.T) {
	for _, want := range []totpdv1.ErrorReason{
		totpdv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED,
		totpdv1.ErrorReason_ERROR_REASON_RATE_LIMITED,
		totpdv1.ErrorReason_ERROR_REASON_REQUEST_ID_REUSED,
	} {
		if got := totpd.ReasonOf(totpd.FromError(richErr(t, "totpd.v1", want.String()))); got != want {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestFromErrorExposesTheRetryInfoDelay(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(
		&errdetails.ErrorInfo{Domain: "totpd.v1", Reason: "ERROR_REASON_RATE_LIMITED"},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
	)
	if err != nil {
		t.Fatal(err)
	}
	var terr *totpd.Error
	if !errors.As(totpd.FromError(st.Err()), &terr) {
		t.Fatal("errors.As failed")
	}
	if terr.Code != codes.ResourceExhausted || terr.Reason != totpdv1.ErrorReason_ERROR_REASON_RATE_LIMITED || terr.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("%+v", terr)
	}
	if totpd.FromError(richErr(t, "totpd.v1", "ERROR_REASON_MALFORMED_CODE")).(*totpd.Error).RetryAfter != 0 {
		t.Fatal("no RetryInfo must mean no RetryAfter")
	}
}
