// Command stepup is a minimal sign-in step-up: verify the code a user typed
// and decide. Digits are the app's code; anything else is taken for a
// recovery code.
//
//	go run ./examples/stepup 127.0.0.1:50051 alice 123456
//	go run ./examples/stepup 127.0.0.1:50051 alice k7q2-9xmf-w4c8
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/totpd/totpd/clients/go/totpd"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: stepup HOST:PORT ACCOUNT CODE")
		os.Exit(2)
	}
	c, err := totpd.NewClient(os.Args[1], totpd.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()

	check := stepUp
	if strings.Trim(os.Args[3], "0123456789") != "" {
		check = recoverWith
	}
	if !check(c, os.Args[2], os.Args[3]) {
		os.Exit(1)
	}
}

func stepUp(c *totpd.Client, account, code string) bool {
	out, err := c.Verify(context.Background(), account, code)
	var terr *totpd.Error
	switch {
	case errors.As(err, &terr) && terr.Reason == totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE:
		fmt.Println("a code is digits only, nothing else")
	case errors.As(err, &terr) && terr.Reason == totpdv1.ErrorReason_ERROR_REASON_RATE_LIMITED:
		fmt.Printf("too many failed codes from this service: pause %s\n", terr.RetryAfter)
	case err != nil:
		fmt.Println("cannot verify now:", err)
	case out.Result == totpd.VerifyValid:
		fmt.Println("step-up granted")
		return true
	case out.Result == totpd.VerifyReplayed:
		fmt.Println("that code was already used: wait for the next one")
	case out.Result == totpd.VerifyLocked && out.UnlockRequired:
		fmt.Println("locked: sign in with a recovery code, or ask support to unlock the account")
	case out.Result == totpd.VerifyLocked:
		fmt.Printf("too many attempts: try again in %s\n", out.RetryAfter)
	default:
		fmt.Printf("wrong code, %d attempts left\n", out.AttemptsLeft)
	}
	return false
}

// recoverWith checks a recovery code, for a user without their phone: each
// works once.
func recoverWith(c *totpd.Client, account, code string) bool {
	v, err := c.VerifyRecoveryCode(context.Background(), account, code)
	var terr *totpd.Error
	switch {
	case errors.As(err, &terr) && terr.Reason == totpdv1.ErrorReason_ERROR_REASON_MALFORMED_CODE:
		fmt.Println("not a recovery code: 12 letters and digits, as printed")
	case err != nil:
		fmt.Println("cannot verify now:", err)
	case v.Outcome.Valid():
		fmt.Printf("step-up granted; %d recovery codes left\n", v.Status.Remaining)
		return true
	case v.Outcome.Result == totpd.VerifyReplayed:
		fmt.Println("that recovery code was already used")
	case v.Outcome.Result == totpd.VerifyLocked && v.Outcome.UnlockRequired:
		fmt.Println("locked: ask support to unlock the account")
	case v.Outcome.Result == totpd.VerifyLocked:
		fmt.Printf("too many attempts: try again in %s\n", v.Outcome.RetryAfter)
	default:
		fmt.Printf("wrong recovery code, %d attempts left\n", v.Outcome.AttemptsLeft)
	}
	return false
}
