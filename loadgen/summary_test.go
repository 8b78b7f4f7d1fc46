package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/client"
)

const msec = time.Millisecond

func TestPercentileNearestRank(t *testing.T) {
	seq := func(n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * msec
		}
		return out
	}
	// The seed's spike: 99 warm 80 ms and one cold 260 ms -> p99 = sorted[99] = 260.
	seed := append(slices.Repeat([]time.Duration{80 * msec}, 99), 260*msec)
	cases := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", seq(1), 0.99, 1 * msec},
		{"p50 of two is the larger", seq(2), 0.5, 2 * msec},
		{"p50 of 100", seq(100), 0.5, 51 * msec},
		{"p99 of 100", seq(100), 0.99, 100 * msec},
		{"p99 of 1000", seq(1000), 0.99, 991 * msec},
		{"q=1 clamps", seq(10), 1, 10 * msec},
		{"seed spike p99", seed, 0.99, 260 * msec},
		{"seed spike p50", seed, 0.5, 80 * msec},
	}
	for _, tc := range cases {
		if got := Percentile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHistogramError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s series
	var h logHist
	for i := 0; i < 200000; i++ {
		// lognormal around 80 ms, plus some sub-256 us values
		v := time.Duration(math.Exp(rng.NormFloat64()*1.5+math.Log(80e3))) * time.Microsecond
		if i%50 == 0 {
			v = time.Duration(rng.IntN(256)) * time.Microsecond
		}
		s.add(v)
		h.add(v)
	}
	slices.Sort(s.samples)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		exact := Percentile(s.samples, q)
		approx := h.quantile(q)
		exactUs, approxUs := exact/time.Microsecond, approx/time.Microsecond
		if exactUs < histLinear {
			if exactUs != approxUs {
				t.Errorf("q=%v: %v vs exact %v (exact region)", q, approx, exact)
			}
			continue
		}
		if rel := math.Abs(float64(approx-exact)) / float64(exact); rel > 0.004 {
			t.Errorf("q=%v: histogram %v, exact %v (%.3f%% off)", q, approx, exact, 100*rel)
		}
	}
	for _, i := range []int{0, 255, 256, 300, 1000, 3000} {
		if got := histIndex(histValue(i)); got != i {
			t.Errorf("bucket %d: its midpoint %d maps to %d", i, histValue(i), got)
		}
	}
}

func TestSeriesFallsBackPastTheCap(t *testing.T) {
	var s series
	s.samples = make([]time.Duration, maxExactSamples) // pretend it is full (zeros)
	for range 100 {
		s.add(50 * msec)
	}
	if !s.overflow {
		t.Fatal("want overflow")
	}
	p := s.percentiles()
	if p.N != 100 || math.Abs(p.P50-50) > 0.2 || p.Max != 50 {
		t.Fatalf("%+v", p)
	}
}

func apiErr(status int, typ, reason string) error {
	return &client.APIError{Status: status, Type: typ, Reason: reason, Message: "x"}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err       error
		throttled bool
		key       string
	}{
		{apiErr(429, "TooManyRequestsException", "ConcurrentInvocationLimitExceeded"), true, "ConcurrentInvocationLimitExceeded"},
		{fmt.Errorf("wrapped: %w", apiErr(429, "TooManyRequestsException", "ReservedFunctionConcurrentInvocationLimitExceeded")), true, "ReservedFunctionConcurrentInvocationLimitExceeded"},
		{apiErr(429, "TooManyRequestsException", ""), true, "(no reason)"},
		{apiErr(500, "ServiceException", ""), false, "ServiceException"},
		{apiErr(404, "ResourceNotFoundException", ""), false, "ResourceNotFoundException"},
		{apiErr(502, "ServiceException", ""), false, "ServiceException"},
		{context.DeadlineExceeded, false, "ClientTimeout"},
		{fmt.Errorf("client: invoke f: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), false, "ConnectionRefused"},
		{fmt.Errorf("client: invoke f: %w", io.ErrUnexpectedEOF), false, "ConnectionReset"},
		{fmt.Errorf("client: invoke f: %w", syscall.ECONNRESET), false, "ConnectionReset"},
		{errors.New("something else"), false, "NetworkError"},
	}
	for _, tc := range cases {
		th, key := Classify(tc.err)
		if th != tc.throttled || key != tc.key {
			t.Errorf("%v: got (%v, %q), want (%v, %q)", tc.err, th, key, tc.throttled, tc.key)
		}
	}
}

// TestTallyMath checks the counting rules and the percentiles on hand-built
// outcomes.
func TestTallyMath(t *testing.T) {
	warm := func(lat time.Duration) outcome {
		return outcome{latency: lat, res: Result{DurationMs: 80}}
	}
	cold := func(lat time.Duration, init float64) outcome {
		return outcome{latency: lat, res: Result{Cold: true, InitMs: init, DurationMs: 80}}
	}
	throttle := func(reason string) outcome {
		return outcome{latency: msec, err: apiErr(429, "TooManyRequestsException", reason)}
	}
	type want struct {
		ok, cold, warm, throttled, errors, canceled, invocations int64
		throttledBy, errorsBy                                    map[string]int64
		lat, coldLat, initMs, serverMs                           Percentiles
	}
	cases := []struct {
		name     string
		outcomes []outcome
		want     want
	}{
		{
			name: "nothing",
			want: want{throttledBy: map[string]int64{}, errorsBy: map[string]int64{}},
		},
		{
			name: "seed-like: 99 warm, 1 cold",
			outcomes: append(slices.Repeat([]outcome{warm(80 * msec)}, 99),
				cold(260*msec, 180)),
			want: want{
				ok: 100, cold: 1, warm: 99, invocations: 100,
				throttledBy: map[string]int64{}, errorsBy: map[string]int64{},
				lat:      Percentiles{N: 100, Mean: 81.8, P50: 80, P90: 80, P99: 260, Max: 260},
				coldLat:  Percentiles{N: 1, Mean: 260, P50: 260, P90: 260, P99: 260, Max: 260},
				initMs:   Percentiles{N: 1, Mean: 180, P50: 180, P90: 180, P99: 180, Max: 180},
				serverMs: Percentiles{N: 100, Mean: 81.8, P50: 80, P90: 80, P99: 260, Max: 260},
			},
		},
		{
			name: "throttles by reason, errors by type, function errors, canceled",
			outcomes: []outcome{
				warm(10 * msec), warm(20 * msec), cold(300*msec, 250),
				throttle("ConcurrentInvocationLimitExceeded"), throttle("ConcurrentInvocationLimitExceeded"),
				throttle("ReservedFunctionConcurrentInvocationLimitExceeded"),
				{latency: msec, err: apiErr(500, "ServiceException", "")},
				{latency: msec, err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}},
				// a function error ran in a (cold) sandbox: cold, and an error, not ok
				{latency: 5 * msec, res: Result{Cold: true, InitMs: 100, FunctionError: "Unhandled", ErrorType: "Sandbox.Timedout"}},
				{latency: 5 * msec, res: Result{FunctionError: "Unhandled"}},
				{latency: 5 * msec, err: context.Canceled, canceled: true},
			},
			want: want{
				ok: 3, cold: 2, warm: 3, throttled: 3, errors: 4, canceled: 1, invocations: 11,
				throttledBy: map[string]int64{"ConcurrentInvocationLimitExceeded": 2, "ReservedFunctionConcurrentInvocationLimitExceeded": 1},
				errorsBy:    map[string]int64{"ServiceException": 1, "ConnectionRefused": 1, "function:Sandbox.Timedout": 1, "function:Unhandled": 1},
				lat:         Percentiles{N: 3, Mean: 110, P50: 20, P90: 300, P99: 300, Max: 300},
				coldLat:     Percentiles{N: 1, Mean: 300, P50: 300, P90: 300, P99: 300, Max: 300},
				initMs:      Percentiles{N: 2, Mean: 175, P50: 250, P90: 250, P99: 250, Max: 250},
				serverMs:    Percentiles{N: 3, Mean: 163.333, P50: 80, P90: 330, P99: 330, Max: 330},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ty := newTally()
			for _, o := range tc.outcomes {
				ty.record(o)
			}
			cfg := Config{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 10}, Duration: 10 * time.Second}
			s := ty.summary(cfg, 10*time.Second, 10*time.Second)
			w := tc.want
			got := want{s.OK, s.Cold, s.Warm, s.Throttled, s.Errors, s.Canceled, s.Invocations,
				s.ThrottledByReason, s.ErrorsByType, round(s.Latency), round(s.ColdLatency), round(s.InitMs), round(s.ServerMs)}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("got  %+v\nwant %+v", got, w)
			}
			if s.OK+s.Throttled+s.Errors+s.Canceled != s.Invocations {
				t.Fatal("invocations != ok + throttled + errors + canceled")
			}
			if s.OKRPS != float64(s.OK)/10 {
				t.Fatalf("ok rps %v", s.OKRPS)
			}
		})
	}
}

func round(p Percentiles) Percentiles {
	r := func(v float64) float64 { return math.Round(v*1000) / 1000 }
	return Percentiles{N: p.N, Mean: r(p.Mean), P50: r(p.P50), P90: r(p.P90), P99: r(p.P99), Max: r(p.Max)}
}

func TestSummaryTableAndJSON(t *testing.T) {
	ty := newTally()
	ty.record(outcome{latency: 81 * msec, res: Result{DurationMs: 80}})
	ty.record(outcome{latency: 262 * msec, res: Result{Cold: true, InitMs: 180, DurationMs: 80}})
	ty.record(outcome{latency: msec, err: apiErr(429, "TooManyRequestsException", "ConcurrentInvocationLimitExceeded")})
	cfg := Config{Function: "hello", Shape: Shape{Kind: ShapePoisson, Rate: 500}, Arrivals: ArrivalsPoisson, Duration: 30 * time.Second, Seed: 7, Concurrency: 256}
	s := ty.summary(cfg, 30*time.Second, 31*time.Second)
	n := 1
	s.AvoidableColdStarts, s.Records = &n, 2
	s.Dropped, s.Offered = 4, 7
	s.LateSends, s.MaxSendLagMs = 2, 3.5

	var b bytes.Buffer
	if err := s.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"coldstart load: hello, poisson 500/s for 30s (poisson arrivals, seed 7, concurrency 256)",
		"invocations", "(offered 7, dropped 4 at the concurrency cap)",
		"throttled", "ConcurrentInvocationLimitExceeded",
		"avoidable cold", "p50", "p99", "262", "rate: offered", "generator lag: 2 sends",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space: %q", l)
		}
	}

	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, s) {
		t.Fatalf("JSON round trip:\n%+v\n%+v", back, *s)
	}
	var m map[string]any
	json.Unmarshal(js, &m)
	for _, k := range []string{"invocations", "ok", "cold", "warm", "throttled", "throttled_by_reason", "errors", "errors_by_type", "latency_ms", "cold_latency_ms", "achieved_rps", "avoidable_cold_starts"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
}
