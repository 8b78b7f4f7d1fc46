package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeInvoker calls fn and remembers when each call arrived.
type fakeInvoker struct {
	mu    sync.Mutex
	calls []time.Time
	fn    func(ctx context.Context, n int64) (Result, error)
	n     atomic.Int64
}

func (f *fakeInvoker) Invoke(ctx context.Context, function string, payload []byte) (Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	f.mu.Unlock()
	return f.fn(ctx, f.n.Add(1))
}

// runWithin runs the load and fails the test if it does not finish by the
// deadline (a run must never hang).
func runWithin(t *testing.T, ctx context.Context, inv Invoker, cfg Config, deadline time.Duration) *Summary {
	t.Helper()
	type res struct {
		s   *Summary
		err error
	}
	done := make(chan res, 1)
	go func() {
		s, err := Run(ctx, inv, cfg)
		done <- res{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.s
	case <-time.After(deadline):
		t.Fatalf("run did not finish within %v", deadline)
		return nil
	}
}

// TestOpenLoop: a handler far slower than the arrival gap does not slow the
// offered load. 200 arrivals in 1 s against 300 ms answers: a closed loop
// with the same concurrency would need the same time only with 60 workers;
// a serial one would take 60 s.
func TestOpenLoop(t *testing.T) {
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) {
		select {
		case <-time.After(300 * time.Millisecond): // the system under test is slow
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		return Result{Cold: n <= 60, DurationMs: 300}, nil
	}}
	cfg := Config{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 200}, Duration: time.Second, Concurrency: 1000}
	start := time.Now()
	s := runWithin(t, context.Background(), inv, cfg, 20*time.Second)

	if s.Invocations != 200 || s.Dropped != 0 || s.OK != 200 {
		t.Fatalf("invocations %d dropped %d ok %d, want 200, 0, 200", s.Invocations, s.Dropped, s.OK)
	}
	inv.mu.Lock()
	first, last := inv.calls[0].Sub(start), inv.calls[len(inv.calls)-1].Sub(start)
	inv.mu.Unlock()
	// Sends spread over the window (first ~2.5 ms, last ~997.5 ms), not
	// paced by the 300 ms answers (paced, they would take 60 s serially).
	// Generous bounds: 2 shared, noisy cores and -race.
	if first > 500*time.Millisecond || last < 850*time.Millisecond || last > 2500*time.Millisecond {
		t.Fatalf("sends from %v to %v, want about 0 to 1 s", first, last)
	}
	if s.AchievedRPS < 190 || s.AchievedRPS > 210 {
		t.Fatalf("achieved %v rps, want ~200", s.AchievedRPS)
	}
	if s.Latency.P50 < 300 {
		t.Fatalf("p50 %v ms below the handler's 300 ms", s.Latency.P50)
	}
	if s.Cold != 60 || s.Warm != 140 {
		t.Fatalf("cold %d warm %d", s.Cold, s.Warm)
	}
}

// TestOfferedCountPoisson: a Poisson run sends exactly the schedule's
// arrivals (same seed, same count), whatever the answers.
func TestOfferedCountPoisson(t *testing.T) {
	shape := Shape{Kind: ShapePoisson, Rate: 300}
	want, _ := Offsets(shape, time.Second, ArrivalsPoisson, 42)
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) { return Result{}, nil }}
	s := runWithin(t, context.Background(), inv, Config{Function: "f", Shape: shape, Duration: time.Second, Seed: 42}, 20*time.Second)
	if s.Offered != int64(len(want)) || s.Invocations != s.Offered {
		t.Fatalf("offered %d sent %d, want %d", s.Offered, s.Invocations, len(want))
	}
	if s.Arrivals != ArrivalsPoisson {
		t.Fatalf("arrivals %q", s.Arrivals)
	}
}

// TestConcurrencyCapDrops: arrivals that find the cap reached are dropped,
// not queued; requests still running after the drain period are canceled.
func TestConcurrencyCapDrops(t *testing.T) {
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) {
		<-ctx.Done() // never answers
		return Result{}, ctx.Err()
	}}
	cfg := Config{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 100}, Duration: 500 * time.Millisecond,
		Concurrency: 5, Drain: 50 * time.Millisecond}
	s := runWithin(t, context.Background(), inv, cfg, 20*time.Second)
	if s.Offered != 50 || s.Invocations != 5 || s.Dropped != 45 || s.Canceled != 5 || s.Errors != 0 {
		t.Fatalf("offered %d sent %d dropped %d canceled %d errors %d; want 50, 5, 45, 5, 0",
			s.Offered, s.Invocations, s.Dropped, s.Canceled, s.Errors)
	}
	if s.Interrupted {
		t.Fatal("a drain timeout is not an interruption")
	}
}

// TestLatencyFromScheduledTime: an invocation sent late is charged for the
// delay (no coordinated omission).
func TestLatencyFromScheduledTime(t *testing.T) {
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) { return Result{}, nil }}
	rn := &runner{cfg: Config{Function: "f"}, inv: inv, t: newTally(), sem: make(chan struct{}, 1), reqCtx: context.Background()}
	rn.sem <- struct{}{}
	rn.wg.Add(1)
	rn.one(time.Now().Add(-100 * time.Millisecond)) // due 100 ms ago
	p := rn.t.lat.percentiles()
	if p.N != 1 || p.Max < 100 {
		t.Fatalf("latency %+v, want >= 100 ms", p)
	}
}

func TestInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inv := &fakeInvoker{fn: func(c context.Context, n int64) (Result, error) {
		if n == 20 {
			cancel() // the user presses Ctrl-C
		}
		<-c.Done()
		return Result{}, c.Err()
	}}
	cfg := Config{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 200}, Duration: time.Minute}
	s := runWithin(t, ctx, inv, cfg, 20*time.Second)
	if !s.Interrupted || s.Invocations < 20 || s.Invocations > 200 || s.Canceled != s.Invocations {
		t.Fatalf("interrupted %v sent %d canceled %d", s.Interrupted, s.Invocations, s.Canceled)
	}
}

func TestProgressSnapshots(t *testing.T) {
	var mu sync.Mutex
	var snaps []Progress
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) {
		if n%4 == 0 {
			return Result{}, apiErr(429, "TooManyRequestsException", "ConcurrentInvocationLimitExceeded")
		}
		return Result{Cold: n == 1}, nil
	}}
	cfg := Config{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 100}, Duration: 600 * time.Millisecond,
		ProgressEvery: 50 * time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			snaps = append(snaps, p)
			mu.Unlock()
		}}
	s := runWithin(t, context.Background(), inv, cfg, 20*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) < 2 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	last := snaps[len(snaps)-1]
	if !last.Final || last.Sent != 60 || last.OK != s.OK || last.Throttled != 15 || last.Cold != 1 {
		t.Fatalf("final snapshot %+v (summary ok %d)", last, s.OK)
	}
	for i, p := range snaps[:len(snaps)-1] {
		if p.Final {
			t.Fatalf("snapshot %d marked final", i)
		}
		if i > 0 && p.Sent < snaps[i-1].Sent {
			t.Fatal("sent went backwards")
		}
	}
	if s.ThrottledByReason["ConcurrentInvocationLimitExceeded"] != 15 {
		t.Fatalf("throttles %v", s.ThrottledByReason)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	inv := &fakeInvoker{fn: func(ctx context.Context, n int64) (Result, error) { return Result{}, nil }}
	for _, cfg := range []Config{
		{Shape: Shape{Kind: ShapeConstant, Rate: 1}, Duration: time.Second},
		{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 0}, Duration: time.Second},
		{Function: "f", Shape: Shape{Kind: ShapeConstant, Rate: 1}},
	} {
		if _, err := Run(context.Background(), inv, cfg); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
}
