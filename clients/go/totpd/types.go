package totpd

import (
	"time"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// VerifyResult is the verdict on one code. A wrong or reused code is a
// result, never an error.
type VerifyResult int

const (
	// VerifyUnspecified is never sent by totpd; it also stands for values
	// newer than this client. Treat it as a refusal.
	VerifyUnspecified VerifyResult = iota
	// VerifyValid: the code matched an unused time step.
	VerifyValid
	// VerifyInvalid: the code matched nothing. Counts as a failure.
	VerifyInvalid
	// VerifyReplayed: the code's time step was already used. Counts as a failure.
	VerifyReplayed
	// VerifyLocked: too many failures, no code was compared; see RetryAfter.
	VerifyLocked
)

func (r VerifyResult) String() string {
	switch r {
	case VerifyValid:
		return "VALID"
	case VerifyInvalid:
		return "INVALID"
	case VerifyReplayed:
		return "REPLAYED"
	case VerifyLocked:
		return "LOCKED"
	default:
		return "UNSPECIFIED"
	}
}

func verifyResultFromProto(r totpdv1.VerifyResult) VerifyResult {
	switch r {
	case totpdv1.VerifyResult_VERIFY_RESULT_VALID:
		return VerifyValid
	case totpdv1.VerifyResult_VERIFY_RESULT_INVALID:
		return VerifyInvalid
	case totpdv1.VerifyResult_VERIFY_RESULT_REPLAYED:
		return VerifyReplayed
	case totpdv1.VerifyResult_VERIFY_RESULT_LOCKED:
		return VerifyLocked
	default:
		return VerifyUnspecified
	}
}

// VerifyOutcome is the verdict with what a caller needs to act on it.
type VerifyOutcome struct {
	Result VerifyResult
	// FactorID is the factor that matched (VALID, REPLAYED) or is locked.
	FactorID string
	// StepOffset is, for VALID, the matched step minus the server's: -1, 0 or
	// 1 plus the factor's DriftSteps; for a VALID Resync, the new drift.
	StepOffset int
	// AttemptsLeft is the number of failures left before the factor locks.
	AttemptsLeft int
	// RetryAfter is, for LOCKED and during backoff, the wait before the next
	// attempt is compared.
	RetryAfter time.Duration
	// UnlockRequired is, for LOCKED, true when the account stays locked until
	// an operator unlocks it (Unlock) or the user signs in with a recovery code
	// (VerifyRecoveryCode): waiting does not help and RetryAfter is zero.
	UnlockRequired bool
}

// Valid reports whether the verdict is VALID.
func (o VerifyOutcome) Valid() bool { return o.Result == VerifyValid }

func outcomeFromProto(o *totpdv1.VerifyOutcome) VerifyOutcome {
	return VerifyOutcome{
		Result:         verifyResultFromProto(o.GetResult()),
		FactorID:       o.GetFactorId(),
		StepOffset:     int(o.GetStepOffset()),
		AttemptsLeft:   int(o.GetAttemptsLeft()),
		RetryAfter:     time.Duration(o.GetRetryAfterSeconds()) * time.Second,
		UnlockRequired: o.GetUnlockRequired(),
	}
}

// Factor is one authenticator app of one account, without secret material.
// Zero times mean "never".
type Factor struct {
	FactorID    string
	AccountID   string
	Label       string
	Issuer      string
	Algorithm   totpdv1.Algorithm
	Digits      int
	Period      time.Duration
	State       totpdv1.FactorState
	CreatedAt   time.Time
	ConfirmedAt time.Time
	LastUsedAt  time.Time
	ExpiresAt   time.Time
	// DriftSteps is the app's measured clock drift in time steps (set by
	// Resync): verifications centre their window on the server's step plus it.
	DriftSteps int
}

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func factorFromProto(f *totpdv1.Factor) Factor {
	return Factor{
		FactorID:    f.GetFactorId(),
		AccountID:   f.GetAccountId(),
		Label:       f.GetLabel(),
		Issuer:      f.GetIssuer(),
		Algorithm:   f.GetAlgorithm(),
		Digits:      int(f.GetDigits()),
		Period:      time.Duration(f.GetPeriodSeconds()) * time.Second,
		State:       f.GetState(),
		CreatedAt:   unixTime(f.GetCreatedAtUnix()),
		ConfirmedAt: unixTime(f.GetConfirmedAtUnix()),
		LastUsedAt:  unixTime(f.GetLastUsedAtUnix()),
		ExpiresAt:   unixTime(f.GetExpiresAtUnix()),
		DriftSteps:  int(f.GetDriftSteps()),
	}
}

func factorsFromProto(fs []*totpdv1.Factor) []Factor {
	out := make([]Factor, 0, len(fs))
	for _, f := range fs {
		out = append(out, factorFromProto(f))
	}
	return out
}

// EnrollParams are the options of Enroll; zero values take the server's
// defaults (SHA1, 6 digits, 30 s, the configured issuer).
type EnrollParams struct {
	AccountID string
	Label     string
	Issuer    string
	Algorithm totpdv1.Algorithm
	Digits    int
	Period    time.Duration
}

// Enrollment is a new PENDING factor and the only copy of its secret.
type Enrollment struct {
	Factor       Factor
	OtpauthURI   string
	SecretBase32 string
	QRPNG        []byte
	QRSVG        string
}

// Confirmation is the outcome of ConfirmEnrollment.
type Confirmation struct {
	Outcome VerifyOutcome
	Factor  Factor
}

// DisableResult is the outcome of Disable: the factors now DISABLED (none
// when the code was not VALID).
type DisableResult struct {
	Outcome VerifyOutcome
	Factors []Factor
}

// BatchItem is one code of a batch; FactorID is optional.
type BatchItem struct {
	AccountID string
	Code      string
	FactorID  string
}

// BatchResult is the answer to one batch item: exactly one of Outcome and
// Err is set.
type BatchResult struct {
	Outcome *VerifyOutcome
	Err     *Error
}
