// Command totpd-loadgen drives closed-loop unary Verify load against one or more
// `totpd serve` processes and prints one JSON object with the figures.
//
// It exists so that the load generator costs the shared 2-core benchmark machine
// as little CPU as possible: the Python grpc.aio client used about as much CPU per
// call as the server, so it measured itself. benchmarks/service/unary.py writes
// the pre-built requests to a file, runs this program once per concurrency level
// and reads its stdout.
//
// Requests file: one request per line, "account_id<TAB>code" (any whitespace).
// The first -warmup lines are sent first, not recorded; the rest are the budget of
// the timed phase. Each of -concurrency goroutines keeps one call in flight on the
// connection k % len(addresses), taking the next request from a shared atomic
// index, until the deadline passes or the requests run out.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	totpdv1 "github.com/totpd/totpd/clients/go/totpdv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// notDone marks a timed slot whose request was never sent.
const notDone = math.MinInt32

// codeNames are gRPC's canonical code names, as grpc.StatusCode names them in Python.
var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

type config struct {
	requestsPath   string
	addresses      []string
	concurrency    int
	seconds        float64
	warmup         int
	timeout        time.Duration
	connectTimeout time.Duration
	warmupLimit    time.Duration
	gomaxprocs     int
	cpuProfile     string
}

func parseFlags() (config, error) {
	var cfg config
	var addresses string
	flag.StringVar(&cfg.requestsPath, "requests", "", "file of pre-built requests, one \"account_id code\" per line (required)")
	flag.StringVar(&addresses, "addr", "", "comma-separated server addresses host:port, one connection each (required)")
	flag.IntVar(&cfg.concurrency, "concurrency", 1, "calls kept in flight (one goroutine each)")
	flag.Float64Var(&cfg.seconds, "seconds", 5, "duration of the timed phase, seconds")
	flag.IntVar(&cfg.warmup, "warmup", 0, "leading requests of the file sent before the timed phase, not recorded")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "per-call deadline")
	flag.DurationVar(&cfg.connectTimeout, "connect-timeout", 30*time.Second, "how long to wait for every connection to be ready")
	flag.DurationVar(&cfg.warmupLimit, "warmup-limit", 60*time.Second, "the warm-up phase stops after this even if requests remain")
	flag.IntVar(&cfg.gomaxprocs, "gomaxprocs", 1, "GOMAXPROCS for the generator (keep it small: the servers need the CPU)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the timed phase to this file")
	flag.Parse()
	for _, a := range strings.Split(addresses, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.addresses = append(cfg.addresses, a)
		}
	}
	switch {
	case cfg.requestsPath == "":
		return cfg, errors.New("-requests is required")
	case len(cfg.addresses) == 0:
		return cfg, errors.New("-addr is required")
	case cfg.concurrency < 1:
		return cfg, errors.New("-concurrency must be >= 1")
	case cfg.seconds <= 0:
		return cfg, errors.New("-seconds must be > 0")
	case cfg.warmup < 0:
		return cfg, errors.New("-warmup must be >= 0")
	case cfg.gomaxprocs < 1:
		return cfg, errors.New("-gomaxprocs must be >= 1")
	}
	return cfg, nil
}

func readRequests(path string) ([]*totpdv1.VerifyRequest, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var requests []*totpdv1.VerifyRequest
	scanner := bufio.NewScanner(file)
	for line := 1; scanner.Scan(); line++ {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"account_id code\", got %d fields", path, line, len(fields))
		}
		requests = append(requests, &totpdv1.VerifyRequest{AccountId: fields[0], Code: fields[1]})
	}
	return requests, scanner.Err()
}

func dial(addresses []string, wait time.Duration) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, len(addresses))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, address := range addresses {
		conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("%s: %w", address, err)
		}
		conns = append(conns, conn)
		conn.Connect()
		for state := conn.GetState(); state != connectivity.Ready; state = conn.GetState() {
			if !conn.WaitForStateChange(ctx, state) {
				closeAll(conns)
				return nil, fmt.Errorf("%s: not ready after %s (last state %s)", address, wait, state)
			}
		}
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, conn := range conns {
		_ = conn.Close()
	}
}

// verdictOf encodes a call's outcome: the VerifyResult value (>= 0), or -1-code for an error.
func verdictOf(response *totpdv1.VerifyResponse, err error) int32 {
	if err != nil {
		return -1 - int32(status.Code(err))
	}
	return int32(response.GetOutcome().GetResult())
}

func verdictName(v int32) string {
	if v >= 0 {
		return totpdv1.VerifyResult(v).String()
	}
	code := codes.Code(-1 - v)
	if name, ok := codeNames[code]; ok {
		return "error:" + name
	}
	return fmt.Sprintf("error:%d", uint32(code))
}

// phase sends requests[next...] from `workers` goroutines until they run out or the
// deadline passes. When latencies and verdicts are given, slot i records request i.
func phase(clients []totpdv1.TotpServiceClient, requests []*totpdv1.VerifyRequest, workers int,
	deadline time.Time, timeout time.Duration, latencies []int64, verdicts []int32) {
	var next atomic.Int64
	var wg sync.WaitGroup
	total := int64(len(requests))
	for k := range workers {
		client := clients[k%len(clients)]
		wg.Go(func() {
			// Bounded: each iteration consumes one index of `requests`.
			for range requests {
				if !time.Now().Before(deadline) {
					return
				}
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				started := time.Now()
				response, err := client.Verify(ctx, requests[i])
				elapsed := time.Since(started)
				cancel()
				if latencies != nil {
					latencies[i] = int64(elapsed)
					verdicts[i] = verdictOf(response, err)
				}
			}
		})
	}
	wg.Wait()
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return math.NaN()
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

// percentile uses the same rank as benchmarks/service/unary.py's _percentile.
func percentile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.RoundToEven(q / 100 * float64(len(sorted))))
	rank = min(len(sorted)-1, max(0, rank-1))
	return float64(sorted[rank]) / 1e6
}

func nanToNull(v float64) any {
	if math.IsNaN(v) {
		return nil
	}
	return v
}

func run(cfg config) (map[string]any, error) {
	runtime.GOMAXPROCS(cfg.gomaxprocs)
	requests, err := readRequests(cfg.requestsPath)
	if err != nil {
		return nil, err
	}
	if cfg.warmup > len(requests) {
		return nil, fmt.Errorf("-warmup %d but only %d requests", cfg.warmup, len(requests))
	}
	warm, timed := requests[:cfg.warmup], requests[cfg.warmup:]
	latencies := make([]int64, len(timed))
	verdicts := make([]int32, len(timed))
	for i := range verdicts {
		verdicts[i] = notDone
	}

	conns, err := dial(cfg.addresses, cfg.connectTimeout)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	clients := make([]totpdv1.TotpServiceClient, len(conns))
	for i, conn := range conns {
		clients[i] = totpdv1.NewTotpServiceClient(conn)
	}

	warmStarted := time.Now()
	phase(clients, warm, cfg.concurrency, warmStarted.Add(cfg.warmupLimit), cfg.timeout, nil, nil)
	warmSeconds := time.Since(warmStarted).Seconds()

	if cfg.cpuProfile != "" {
		profile, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer profile.Close()
		if err := pprof.StartCPUProfile(profile); err != nil {
			return nil, err
		}
	}
	cpuBefore := cpuSeconds()
	started := time.Now()
	deadline := started.Add(time.Duration(cfg.seconds * float64(time.Second)))
	phase(clients, timed, cfg.concurrency, deadline, cfg.timeout, latencies, verdicts)
	elapsed := time.Since(started).Seconds()
	cpuTimed := cpuSeconds() - cpuBefore
	if cfg.cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	done := make([]int64, 0, len(timed))
	counts := map[string]int{}
	var sum int64
	for i, v := range verdicts {
		if v == notDone {
			continue
		}
		done = append(done, latencies[i])
		sum += latencies[i]
		counts[verdictName(v)]++
	}
	slices.Sort(done)
	n := len(done)
	mean, maxMs, rps := math.NaN(), math.NaN(), 0.0
	if n > 0 {
		mean = float64(sum) / float64(n) / 1e6
		maxMs = float64(done[n-1]) / 1e6
	}
	if elapsed > 0 {
		rps = float64(n) / elapsed
	}
	return map[string]any{
		"requests":         n,
		"seconds":          elapsed,
		"rps":              rps,
		"p50_ms":           nanToNull(percentile(done, 50)),
		"p90_ms":           nanToNull(percentile(done, 90)),
		"p99_ms":           nanToNull(percentile(done, 99)),
		"max_ms":           nanToNull(maxMs),
		"mean_ms":          nanToNull(mean),
		"verdicts":         counts,
		"budget":           len(timed),
		"budget_exhausted": n >= len(timed),
		"warmup_requests":  len(warm),
		"warmup_seconds":   warmSeconds,
		"cpu_s":            cpuSeconds(),
		"cpu_timed_s":      cpuTimed,
		"concurrency":      cfg.concurrency,
		"servers":          len(cfg.addresses),
		"gomaxprocs":       runtime.GOMAXPROCS(0),
	}, nil
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "totpd-loadgen:", err)
		flag.Usage()
		os.Exit(2)
	}
	out, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "totpd-loadgen:", err)
		os.Exit(1)
	}
	encoder := json.NewEncoder(os.Stdout)
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "totpd-loadgen:", err)
		os.Exit(1)
	}
}
