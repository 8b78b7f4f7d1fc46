// Package loadgen is coldstart's open-loop load generator: it offers
// invocations on a schedule fixed in advance (constant, Poisson, step, spike),
// never waiting for answers, and measures each one from the moment it was
// due. See DESIGN.md.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Invoker is what the load generator needs from a gateway: one synchronous
// invocation. A throttle or platform failure is an error (for the client
// adapter, a *client.APIError); a function error is a Result with
// FunctionError set.
type Invoker interface {
	Invoke(ctx context.Context, function string, payload []byte) (Result, error)
}

// Result is what one successful (2xx) invocation reports.
type Result struct {
	Cold          bool
	InitMs        float64 // cold-start duration reported by the platform
	DurationMs    float64 // handler duration reported by the platform
	BilledMs      int64
	FunctionError string // X-Amz-Function-Error ("Unhandled"); empty on success
	ErrorType     string // the function error's errorType ("Sandbox.Timedout"), when known
	Sandbox       string
	Worker        string
}

// Defaults of Config.
const (
	DefaultConcurrency   = 256
	DefaultDrain         = 30 * time.Second
	DefaultProgressEvery = 250 * time.Millisecond
	// lateThreshold: a send this far behind its schedule counts as late.
	// Timer wake-ups are good to about 1-2 ms, so only more means the
	// generator itself is falling behind.
	lateThreshold = 5 * time.Millisecond
)

// Config is one load run.
type Config struct {
	Function string
	Payload  []byte
	Shape    Shape
	Arrivals string // ArrivalsEven or ArrivalsPoisson; "" = the shape's default
	Duration time.Duration
	Seed     int64

	// Concurrency caps requests in flight. An arrival that finds the cap
	// reached is not sent and counts as dropped: queueing it would delay
	// later arrivals and turn the generator closed-loop.
	Concurrency int
	// Timeout bounds each request (0: none; the function's own timeout rules).
	Timeout time.Duration
	// Drain is how long to wait for requests still in flight once the
	// schedule is over; those still running after it are canceled.
	Drain time.Duration

	// Progress, if set, is called about every ProgressEvery from its own
	// goroutine, and once more with Final set when the run is over.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a live snapshot of a run.
type Progress struct {
	Elapsed   time.Duration
	Sent      int64
	OK        int64
	Cold      int64
	Throttled int64
	Errors    int64
	Dropped   int64
	InFlight  int64
	RPS       float64       // sends per second over about the last second
	P99       time.Duration // latency of ok requests so far (histogram estimate)
	Final     bool
}

// Run offers the configured load to inv and returns the summary. It returns
// an error only for a bad Config; failures of the invocations themselves are
// counted in the summary. Canceling ctx stops the run early (the summary
// says Interrupted) and cancels requests in flight.
func Run(ctx context.Context, inv Invoker, cfg Config) (*Summary, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.Arrivals == "" {
		cfg.Arrivals = cfg.Shape.DefaultArrivals()
	}
	if cfg.Function == "" {
		return nil, errors.New("loadgen: no function")
	}
	sched, err := NewSchedule(cfg.Shape, cfg.Duration, cfg.Arrivals, cfg.Seed)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}

	r := &runner{cfg: cfg, inv: inv, t: newTally(), sem: make(chan struct{}, cfg.Concurrency), window: []sample{{}}}
	// Requests are canceled when the caller gives up (ctx) or the drain
	// period runs out (cancelRequests).
	reqCtx, cancelRequests := context.WithCancel(ctx)
	defer cancelRequests()
	r.reqCtx = reqCtx

	r.start = time.Now()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			defer close(progressDone)
			r.progressLoop(stopProgress)
		}()
	} else {
		close(progressDone)
	}

	interrupted := r.schedule(ctx, sched)
	window := cfg.Duration
	if interrupted {
		window = time.Since(r.start)
	}

	inflight := make(chan struct{})
	go func() { r.wg.Wait(); close(inflight) }()
	if !interrupted {
		drain := time.NewTimer(cfg.Drain)
		select {
		case <-inflight:
		case <-drain.C:
		case <-ctx.Done():
			interrupted = true
		}
		drain.Stop()
	}
	cancelRequests()
	<-inflight
	elapsed := time.Since(r.start)

	close(stopProgress)
	<-progressDone
	if cfg.Progress != nil {
		p := r.snapshot(nil)
		p.Final = true
		cfg.Progress(p)
	}

	s := r.t.summary(cfg, window, elapsed)
	s.Offered = r.sent.Load() + r.dropped.Load()
	s.Invocations = r.sent.Load()
	s.Dropped = r.dropped.Load()
	s.MaxSendLagMs = ms(time.Duration(r.maxLag.Load()))
	s.LateSends = r.late.Load()
	s.Interrupted = interrupted
	s.fillRates(window, elapsed)
	return s, nil
}

type runner struct {
	cfg    Config
	inv    Invoker
	t      *tally
	sem    chan struct{}
	wg     sync.WaitGroup
	reqCtx context.Context
	start  time.Time

	sent, dropped, late, maxLag atomic.Int64

	// progress bookkeeping (progress goroutine only)
	window []sample
}

type sample struct {
	at   time.Duration
	sent int64
}

// schedule sends every arrival at its time and reports whether ctx ended
// the run early.
func (r *runner) schedule(ctx context.Context, sched *Schedule) bool {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		off, ok := sched.Next()
		if !ok {
			return false
		}
		due := r.start.Add(off)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return true
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return true
		}
		if lag := time.Since(due); lag > 0 {
			if lag > lateThreshold {
				r.late.Add(1)
			}
			for {
				cur := r.maxLag.Load()
				if int64(lag) <= cur || r.maxLag.CompareAndSwap(cur, int64(lag)) {
					break
				}
			}
		}
		select {
		case r.sem <- struct{}{}:
			r.sent.Add(1)
			r.wg.Add(1)
			go r.one(due)
		default:
			r.dropped.Add(1)
		}
	}
}

// one runs a single invocation that was due at due. Its latency is measured
// from due, not from when it was actually sent: a generator that fell behind
// must not hide the delay (coordinated omission).
func (r *runner) one(due time.Time) {
	defer r.wg.Done()
	defer func() { <-r.sem }()
	ctx := r.reqCtx
	if r.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
	}
	res, err := r.inv.Invoke(ctx, r.cfg.Function, r.cfg.Payload)
	lat := time.Since(due)
	r.t.record(outcome{
		latency:  lat,
		res:      res,
		err:      err,
		canceled: err != nil && r.reqCtx.Err() != nil && errors.Is(err, context.Canceled),
	})
}

func (r *runner) progressLoop(stop <-chan struct{}) {
	tick := time.NewTicker(r.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			r.cfg.Progress(r.snapshot(&r.window))
		}
	}
}

// snapshot reads the live counters. With window non-nil it also keeps the
// last second of send counts to compute the current rate.
func (r *runner) snapshot(window *[]sample) Progress {
	elapsed := time.Since(r.start)
	p := Progress{
		Elapsed:  elapsed,
		Sent:     r.sent.Load(),
		Dropped:  r.dropped.Load(),
		InFlight: int64(len(r.sem)),
	}
	r.t.mu.Lock()
	p.OK, p.Cold, p.Throttled, p.Errors = r.t.ok, r.t.cold, r.t.throttled, r.t.errors
	p.P99 = r.t.lat.liveQuantile(0.99)
	r.t.mu.Unlock()
	if window != nil {
		w := append(*window, sample{elapsed, p.Sent})
		for len(w) > 2 && elapsed-w[1].at >= time.Second {
			w = w[1:]
		}
		*window = w
		if first := w[0]; elapsed > first.at {
			p.RPS = float64(p.Sent-first.sent) / (elapsed - first.at).Seconds()
		}
	} else if elapsed > 0 {
		p.RPS = float64(p.Sent) / elapsed.Seconds()
	}
	return p
}
