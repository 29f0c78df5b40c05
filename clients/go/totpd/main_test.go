package totpd_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// target is the address of the totpd that TestMain starts.
var target string

// repoRoot is $TOTPD_REPO_ROOT or the repository holding this package.
func repoRoot() string {
	if r := os.Getenv("TOTPD_REPO_ROOT"); r != "" {
		return r
	}
	wd, _ := os.Getwd() // clients/go/totpd
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

func python(root string) string {
	if p := os.Getenv("TOTPD_PYTHON"); p != "" {
		return p
	}
	if venv := filepath.Join(root, ".venv", "bin", "python"); fileExists(venv) {
		return venv
	}
	return "python3"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var addrRE = regexp.MustCompile(`^.+:\d+$`)

// TestMain starts a real totpd from this repository on a free loopback port:
// python -m totpd serve --dev --listen 127.0.0.1:0 --data-dir D --ready-file F.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "totpd-go-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	addr, stop, err := startTotpd(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	target = addr
	return m.Run()
}

// startTotpd runs python -m totpd serve --dev --listen 127.0.0.1:0 with its
// data, log and ready file in dir (plus extra flags) and waits for the ready
// file. stop sends SIGTERM and waits (kills after 10 s).
func startTotpd(dir string, extra ...string) (addr string, stop func(), err error) {
	root := repoRoot()
	ready := filepath.Join(dir, "ready")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	args := append([]string{"-m", "totpd", "serve", "--dev",
		"--listen", "127.0.0.1:0", "--data-dir", dir, "--ready-file", ready}, extra...)
	cmd := exec.Command(python(root), args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", nil, fmt.Errorf("starting totpd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && addrRE.MatchString(strings.TrimSpace(string(b))) {
			return strings.TrimSpace(string(b)), stop, nil
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			b, _ := os.ReadFile(logPath)
			return "", nil, fmt.Errorf("totpd exited (%v):\n%s", err, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			b, _ := os.ReadFile(logPath)
			return "", nil, fmt.Errorf("totpd did not become ready in 60 s:\n%s", b)
		}
	}
}
