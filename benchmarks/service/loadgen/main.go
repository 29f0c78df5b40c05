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
// the timed phase.
//
// Closed loop (the default): each of -concurrency goroutines keeps one call in
// flight on the connection k % len(addresses), taking the next request from a
// shared atomic index, until the deadline passes or the requests run out. The
// latency of a call is measured from its send to its response, so a slow server
// slows the sending down and its stalls hide from the tail (coordinated omission).
//
// Open loop (-rate R > 0): the timed phase schedules min(R * -seconds, budget)
// requests at fixed intervals of 1/R from its start, whatever the server does;
// request i is due at start + i/R and goes to connection i % len(addresses).
// Latency is measured from the due time, not the actual send, so a stalled server
// (or a generator that fell behind) shows in the tail. At most -max-outstanding
// calls are in flight: a request due while the bound is full is not sent and is
// counted as dropped, never sent later (the rate does not silently slow down). A
// request sent more than -late-after past its due time is counted as late (the
// generator itself was behind: it had no CPU). The phase ends when the last
// request is due and every call sent has answered (each bounded by -timeout).
// The warm-up is closed-loop at -concurrency, as before.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
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

// notDone marks a timed slot whose request was never sent; dropped, one the open
// loop did not send because -max-outstanding calls were in flight at its due time.
const (
	notDone = math.MinInt32
	dropped = math.MinInt32 + 1
)

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
	rate           float64
	maxOutstanding int
	lateAfter      time.Duration
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
	flag.Float64Var(&cfg.rate, "rate", 0, "open loop: requests per second scheduled at fixed intervals (0: closed loop)")
	flag.IntVar(&cfg.maxOutstanding, "max-outstanding", 1000, "open loop: calls in flight at most; a request due beyond it is dropped")
	flag.DurationVar(&cfg.lateAfter, "late-after", time.Millisecond, "open loop: a request sent this long past its due time counts as late")
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
	case cfg.rate < 0 || math.IsNaN(cfg.rate) || math.IsInf(cfg.rate, 0):
		return cfg, errors.New("-rate must be a finite number >= 0")
	case cfg.maxOutstanding < 1:
		return cfg, errors.New("-max-outstanding must be >= 1")
	case cfg.lateAfter < 0:
		return cfg, errors.New("-late-after must be >= 0")
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

// openResult is what the open-loop phase counts besides each request's slot.
type openResult struct {
	scheduled int // requests due within the phase
	dropped   int // due while -max-outstanding calls were in flight: never sent
	peak      int // the most calls in flight at once
}

// openPhase sends requests[i] at its due time start + i/rate (i < n), each on its own
// goroutine, whatever the server does; latencies[i] runs from the due time to the
// response and lags[i] from the due time to the actual send. A request due while
// maxOutstanding calls are in flight is dropped: its verdict stays `dropped`. Bounded:
// n iterations, then every call sent answers within `timeout`.
func openPhase(clients []totpdv1.TotpServiceClient, requests []*totpdv1.VerifyRequest, n int,
	rate float64, maxOutstanding int, timeout time.Duration, started time.Time,
	latencies, lags []int64, verdicts []int32) openResult {
	interval := float64(time.Second) / rate
	slots := make(chan struct{}, maxOutstanding)
	var wg sync.WaitGroup
	result := openResult{scheduled: n}
	for i := range n {
		due := started.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case slots <- struct{}{}:
		default:
			verdicts[i] = dropped
			result.dropped++
			continue
		}
		result.peak = max(result.peak, len(slots))
		client := clients[i%len(clients)]
		wg.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			sent := time.Now()
			response, err := client.Verify(ctx, requests[i])
			answered := time.Now()
			cancel()
			latencies[i] = int64(answered.Sub(due))
			lags[i] = int64(sent.Sub(due))
			verdicts[i] = verdictOf(response, err)
		})
	}
	wg.Wait()
	return result
}

// latencyFigures are the percentiles of the given latencies (nanoseconds), in ms.
func latencyFigures(values []int64, prefix string) map[string]any {
	slices.Sort(values)
	n := len(values)
	mean, maxMs := math.NaN(), math.NaN()
	if n > 0 {
		var sum int64
		for _, v := range values {
			sum += v
		}
		mean = float64(sum) / float64(n) / 1e6
		maxMs = float64(values[n-1]) / 1e6
	}
	return map[string]any{
		prefix + "p50_ms":  nanToNull(percentile(values, 50)),
		prefix + "p90_ms":  nanToNull(percentile(values, 90)),
		prefix + "p99_ms":  nanToNull(percentile(values, 99)),
		prefix + "max_ms":  nanToNull(maxMs),
		prefix + "mean_ms": nanToNull(mean),
	}
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
	lags := make([]int64, len(timed))
	verdicts := make([]int32, len(timed))
	for i := range verdicts {
		verdicts[i] = notDone
	}
	open := cfg.rate > 0
	wanted := 0 // open loop: the requests the schedule asks for
	if open {
		wanted = max(1, int(math.Round(cfg.rate*cfg.seconds)))
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
	var opened openResult
	cpuBefore := cpuSeconds()
	started := time.Now()
	if open {
		n := min(wanted, len(timed))
		opened = openPhase(clients, timed, n, cfg.rate, cfg.maxOutstanding, cfg.timeout, started,
			latencies, lags, verdicts)
	} else {
		deadline := started.Add(time.Duration(cfg.seconds * float64(time.Second)))
		phase(clients, timed, cfg.concurrency, deadline, cfg.timeout, latencies, verdicts)
	}
	elapsed := time.Since(started).Seconds()
	cpuTimed := cpuSeconds() - cpuBefore
	if cfg.cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	done := make([]int64, 0, len(timed))
	fromSend := make([]int64, 0, len(timed))
	sendLags := make([]int64, 0, len(timed))
	counts := map[string]int{}
	late := 0
	for i, v := range verdicts {
		if v == notDone || v == dropped {
			continue
		}
		done = append(done, latencies[i])
		counts[verdictName(v)]++
		if open {
			fromSend = append(fromSend, latencies[i]-lags[i])
			sendLags = append(sendLags, lags[i])
			if lags[i] > int64(cfg.lateAfter) {
				late++
			}
		}
	}
	n := len(done)
	rps := 0.0
	if elapsed > 0 {
		rps = float64(n) / elapsed
	}
	out := latencyFigures(done, "")
	for key, value := range map[string]any{
		"mode":             "closed",
		"requests":         n,
		"seconds":          elapsed,
		"rps":              rps,
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
	} {
		out[key] = value
	}
	if open {
		// Latencies above run from each request's due time; these from its actual send.
		maps.Copy(out, latencyFigures(fromSend, "from_send_"))
		lagFigures := latencyFigures(sendLags, "send_lag_")
		out["mode"] = "open"
		out["rate"] = cfg.rate
		out["scheduled"] = opened.scheduled
		out["schedule_s"] = float64(opened.scheduled) / cfg.rate
		out["sent"] = opened.scheduled - opened.dropped
		out["dropped"] = opened.dropped
		out["late"] = late
		out["late_after_ms"] = float64(cfg.lateAfter) / 1e6
		out["send_lag_p99_ms"] = lagFigures["send_lag_p99_ms"]
		out["send_lag_max_ms"] = lagFigures["send_lag_max_ms"]
		out["max_outstanding"] = cfg.maxOutstanding
		out["peak_outstanding"] = opened.peak
		// Exhausted: the file held fewer requests than R * seconds, so the schedule was cut short.
		out["budget_exhausted"] = opened.scheduled < wanted
	}
	return out, nil
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
