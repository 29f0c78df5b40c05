package totpd

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// RecoveryCodesStatus tells how many recovery codes an account has left,
// never the codes themselves. The zero value means "no set".
type RecoveryCodesStatus struct {
	// Remaining is the number of unused codes of the current set.
	Remaining int
	// Issued is how many codes the current set had when it was generated.
	Issued int
	// GeneratedAt is when the current set was generated; zero when none.
	GeneratedAt time.Time
}

func recoveryStatusFromProto(s *totpdv1.RecoveryCodesStatus) RecoveryCodesStatus {
	return RecoveryCodesStatus{
		Remaining:   int(s.GetRemaining()),
		Issued:      int(s.GetIssued()),
		GeneratedAt: unixTime(s.GetGeneratedAtUnix()),
	}
}

// RecoveryCodes is a new set of single-use recovery codes: the only copy.
// Show the codes to the user once; never log or store them.
type RecoveryCodes struct {
	Codes  []string
	Status RecoveryCodesStatus
}

// String leaves the codes out, so that printing a RecoveryCodes (%v, %+v)
// never logs them.
func (r RecoveryCodes) String() string {
	return fmt.Sprintf("{Codes:<%d hidden> Status:%+v}", len(r.Codes), r.Status)
}

// RecoveryCodeVerdict is the verdict on one recovery code with the account's
// codes after the attempt.
type RecoveryCodeVerdict struct {
	// Outcome: VALID once per code (it also lifts the lock after too many
	// consecutive failures, which does not stop a recovery code), REPLAYED
	// for a used code, INVALID for a code of no current set (both counted as
	// failures), LOCKED (nothing compared, RetryAfter set) while the
	// account's failure budget is spent. Outcome.FactorID is "".
	Outcome VerifyOutcome
	Status  RecoveryCodesStatus
}

// UnlockResult says what an Unlock cleared (all false and zero: nothing was
// locked or counted).
type UnlockResult struct {
	// LockLifted: the account was locked after too many consecutive failures.
	LockLifted bool
	// ConsecutiveFailuresCleared is the run of consecutive failures cleared.
	ConsecutiveFailuresCleared int
	// FactorsCleared counts the factors whose failures, backoff or timed lock
	// were cleared.
	FactorsCleared int
	// BudgetRefilled: the account's failure budget was partly spent and is
	// full again.
	BudgetRefilled bool
}

// ResyncResult is the outcome of a Resync: for VALID, Outcome.StepOffset and
// Factor.DriftSteps are the new drift.
type ResyncResult struct {
	Outcome VerifyOutcome
	Factor  Factor
}

// MFAStatus is ListFactors' full answer: the factors and the account's
// recovery codes status.
type MFAStatus struct {
	Factors       []Factor
	RecoveryCodes RecoveryCodesStatus
}

// refusedBeforeWork is the retry policy of the calls that act on every
// attempt and carry no request_id (GenerateRecoveryCodes, VerifyRecoveryCode,
// Resync): only OVERLOADED, refused before any work. UNAVAILABLE, even with
// STORE_UNAVAILABLE, may follow a commit whose response (or the database's
// acknowledgement) was lost: a retry would answer REPLAYED for the recovery
// code just used, burning it, consume a resync's steps again, count another
// failure or replace the set just made, so it goes back to the caller.
func refusedBeforeWork(e *Error) bool {
	return e.Code == codes.ResourceExhausted && e.Reason == totpdv1.ErrorReason_ERROR_REASON_OVERLOADED
}

// GenerateRecoveryCodes makes a new set of recovery codes for an account with
// at least one ACTIVE factor; any earlier set stops working. It is retried
// only on OVERLOADED: after UNAVAILABLE a set may have been made whose
// response was lost; calling again makes a fresh one (the lost one is dead).
func (c *Client) GenerateRecoveryCodes(ctx context.Context, accountID string) (*RecoveryCodes, error) {
	r, err := callRetrying(ctx, c, refusedBeforeWork, c.rpc.GenerateRecoveryCodes,
		&totpdv1.GenerateRecoveryCodesRequest{AccountId: accountID})
	if err != nil {
		return nil, err
	}
	return &RecoveryCodes{Codes: r.GetCodes(), Status: recoveryStatusFromProto(r.GetStatus())}, nil
}

// VerifyRecoveryCode consumes one recovery code, typed in any case, with or
// without separators. Wrong codes count toward the account's attempt limits.
// It is retried only on OVERLOADED, never on a failure that may have consumed
// the code (UNAVAILABLE): ask the user again rather than answer REPLAYED on
// their behalf.
func (c *Client) VerifyRecoveryCode(ctx context.Context, accountID, code string) (*RecoveryCodeVerdict, error) {
	r, err := callRetrying(ctx, c, refusedBeforeWork, c.rpc.VerifyRecoveryCode,
		&totpdv1.VerifyRecoveryCodeRequest{AccountId: accountID, Code: code})
	if err != nil {
		return nil, err
	}
	return &RecoveryCodeVerdict{Outcome: outcomeFromProto(r.GetOutcome()), Status: recoveryStatusFromProto(r.GetStatus())}, nil
}

// Unlock lifts the account's attempt limits (it needs the admin permission):
// with factorID "" every live factor's failures and backoff, otherwise only
// that factor's; the account-wide lock, run of failures and failure budget
// either way. It is idempotent, so it is retried like Enroll; the result
// describes the last attempt.
func (c *Client) Unlock(ctx context.Context, accountID, factorID string) (*UnlockResult, error) {
	r, err := call(ctx, c, c.rpc.Unlock, &totpdv1.UnlockRequest{AccountId: accountID, FactorId: factorID})
	if err != nil {
		return nil, err
	}
	return &UnlockResult{
		LockLifted:                 r.GetLockLifted(),
		ConsecutiveFailuresCleared: int(r.GetConsecutiveFailuresCleared()),
		FactorsCleared:             int(r.GetFactorsCleared()),
		BudgetRefilled:             r.GetBudgetRefilled(),
	}, nil
}

// Resync measures an ACTIVE factor's clock drift from two consecutive codes
// of its app (code2 the one after code1) and stores it; both steps are
// consumed. INVALID (no such pair) and REPLAYED (its steps were already used;
// no drift stored) each count as one failure. Like VerifyRecoveryCode it is
// retried only on OVERLOADED.
func (c *Client) Resync(ctx context.Context, accountID, factorID, code1, code2 string) (*ResyncResult, error) {
	r, err := callRetrying(ctx, c, refusedBeforeWork, c.rpc.Resync, &totpdv1.ResyncRequest{
		AccountId: accountID, FactorId: factorID, Code1: code1, Code2: code2,
	})
	if err != nil {
		return nil, err
	}
	return &ResyncResult{Outcome: outcomeFromProto(r.GetOutcome()), Factor: factorFromProto(r.GetFactor())}, nil
}

// MFAStatus is ListFactors with the account's recovery codes status.
func (c *Client) MFAStatus(ctx context.Context, accountID string, includeInactive bool) (*MFAStatus, error) {
	r, err := call(ctx, c, c.rpc.ListFactors, &totpdv1.ListFactorsRequest{AccountId: accountID, IncludeInactive: includeInactive})
	if err != nil {
		return nil, err
	}
	return &MFAStatus{Factors: factorsFromProto(r.GetFactors()), RecoveryCodes: recoveryStatusFromProto(r.GetRecoveryCodes())}, nil
}
