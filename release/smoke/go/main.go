// Command releasecheck does Enroll -> ConfirmEnrollment -> Verify through the released Go
// module, fetched by the go command from a file-based module proxy (release/check.py).
// The codes come from the standard library (RFC 6238 with HMAC-SHA1), not from the client.
//
//	go run . HOST:PORT
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/totpd/totpd/clients/go/totpd"
)

func totp(secret string, at time.Time, digits int, period time.Duration) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		return "", err
	}
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(at.Unix()/int64(period/time.Second)))
	mac := hmac.New(sha1.New, key)
	mac.Write(counter[:])
	h := mac.Sum(nil)
	offset := h[len(h)-1] & 0x0f
	number := binary.BigEndian.Uint32(h[offset:]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, number%mod), nil
}

func run(target string) error {
	ctx := context.Background()
	c, err := totpd.NewClient(target, totpd.WithInsecure())
	if err != nil {
		return err
	}
	defer c.Close()
	account := fmt.Sprintf("release-check-go-%d", time.Now().UnixNano())
	e, err := c.Enroll(ctx, totpd.EnrollParams{AccountID: account, Label: "release check"})
	if err != nil {
		return err
	}
	f := e.Factor
	now := time.Now()
	code, err := totp(e.SecretBase32, now, f.Digits, f.Period)
	if err != nil {
		return err
	}
	conf, err := c.Confirm(ctx, account, f.FactorID, code)
	if err != nil || conf.Outcome.Result != totpd.VerifyValid {
		return fmt.Errorf("confirm: %v %v", conf, err)
	}
	if out, err := c.Verify(ctx, account, code); err != nil || out.Result != totpd.VerifyReplayed {
		return fmt.Errorf("verify same code: %+v %v", out, err)
	}
	next, err := totp(e.SecretBase32, now.Add(f.Period), f.Digits, f.Period)
	if err != nil {
		return err
	}
	if out, err := c.Verify(ctx, account, next); err != nil || out.Result != totpd.VerifyValid {
		return fmt.Errorf("verify next code: %+v %v", out, err)
	}
	return nil
}

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "go:", err)
		os.Exit(1)
	}
	version := "?"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/totpd/totpd/clients/go" {
				version = dep.Version + " " + dep.Sum
			}
		}
	}
	fmt.Printf("go: github.com/totpd/totpd/clients/go %s:\n", version)
	fmt.Println("  enroll -> confirm VALID -> verify same code REPLAYED -> verify next code VALID")
}
