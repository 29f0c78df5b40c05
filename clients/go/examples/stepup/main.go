// Command stepup is a minimal sign-in step-up: verify the code a user typed
// and decide.
//
//	go run ./examples/stepup 127.0.0.1:50051 alice 123456
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

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

	out, err := c.Verify(context.Background(), os.Args[2], os.Args[3])
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
		return
	case out.Result == totpd.VerifyReplayed:
		fmt.Println("that code was already used: wait for the next one")
	case out.Result == totpd.VerifyLocked && out.UnlockRequired:
		fmt.Println("locked: ask support to unlock the account")
	case out.Result == totpd.VerifyLocked:
		fmt.Printf("too many attempts: try again in %s\n", out.RetryAfter)
	default:
		fmt.Printf("wrong code, %d attempts left\n", out.AttemptsLeft)
	}
	os.Exit(1)
}
