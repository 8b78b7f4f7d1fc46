package sim

import (
	"math"
	"slices"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// The engine is a discrete-event loop over two sources: the trace's arrivals
// (already sorted) and a heap of timed events (completions, pre-warms).
// Timed events at time t run before an arrival at t, which is the seed's
// `busy_until <= now`: a sandbox that finishes at the instant a request
// arrives is free for it.

type eventKind uint8

const (
	evComplete eventKind = iota // an invocation ends; its sandbox is released
	evPrewarm                   // the hybrid policy loads a sandbox ahead of use
)

type event struct {
	at   time.Duration // virtual time (the model's clock)
	seq  uint64        // insertion order breaks ties, so runs are deterministic
	sb   *pool.Sandbox
	ttl  time.Duration // keep-alive of a pre-warmed sandbox
	fn   int32
	kind eventKind
}

// eventHeap is a binary min-heap by (at, seq). It is typed rather than built
// on container/heap to keep the per-invocation cost free of interface calls.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}

func evLess(a, b *event) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

// push and pop move a hole instead of swapping: each level costs one copy
// of the 48-byte event rather than three.
func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !evLess(&e, &s[p]) {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = e
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	n := len(s) - 1
	x := s[n]
	s[n] = event{}
	s = s[:n]
	if n > 0 {
		i := 0
		for {
			c := 2*i + 1
			if c >= n {
				break
			}
			if c+1 < n && evLess(&s[c+1], &s[c]) {
				c++
			}
			if !evLess(&s[c], &x) {
				break
			}
			s[i] = s[c]
			i = c
		}
		s[i] = x
	}
	*h = s
	return top
}

// FunctionResult is one function's line of the result (or the total).
type FunctionResult struct {
	Name            string                 `json:"name"`
	MemoryMB        int                    `json:"memory_mb,omitempty"`
	Invocations     int64                  `json:"invocations"` // requests: cold + warm + throttles
	Cold            int64                  `json:"cold_starts"`
	Warm            int64                  `json:"warm_starts"`
	Throttles       int64                  `json:"throttles"`
	ThrottleReasons map[quota.Reason]int64 `json:"throttle_reasons,omitempty"`
	P50Ms           float64                `json:"p50_ms"`
	P99Ms           float64                `json:"p99_ms"`
	PeakConcurrency int                    `json:"peak_concurrency"`
	BilledMs        float64                `json:"billed_ms"`
	GBs             float64                `json:"gb_s"`               // billed GB-s, on-demand and provisioned
	ProvisionedGBs  float64                `json:"provisioned_gb_s"`   // of which run on provisioned sandboxes
	Provisioned     int                    `json:"provisioned"`        // provisioned concurrency
	ProvisionedHits int64                  `json:"provisioned_hits"`   // invocations served by provisioned sandboxes
	IdleGBs         float64                `json:"idle_gb_s"`          // memory-time held idle by keep-alive
	Prewarms        int64                  `json:"prewarms,omitempty"` // sandboxes loaded by the hybrid policy
	Cost            Cost                   `json:"cost"`
}

// Result is the outcome of one simulation run.
type Result struct {
	Model     string           `json:"model"`
	Functions []FunctionResult `json:"functions"`
	Total     FunctionResult   `json:"total"`
	HorizonS  float64          `json:"horizon_s"` // billing window of provisioned concurrency
	Fleet     *Fleet           `json:"fleet,omitempty"`
	KeepAlive *KeepAliveStats  `json:"keep_alive,omitempty"`
	Timeline  *Timeline        `json:"-"`
}

// fnAccum gathers one function's figures during a run.
type fnAccum struct {
	FunctionResult
	durations []float64 // per invocation, ms, for the percentiles
	inflight  int
}

func (a *fnAccum) started(d float64) {
	a.durations = append(a.durations, d)
	a.inflight++
	if a.inflight > a.PeakConcurrency {
		a.PeakConcurrency = a.inflight
	}
}

func (a *fnAccum) throttled(r quota.Reason) {
	a.Invocations++
	a.Throttles++
	if a.ThrottleReasons == nil {
		a.ThrottleReasons = map[quota.Reason]int64{}
	}
	a.ThrottleReasons[r]++
}

// nearestRank returns the seed's percentiles of sorted values: p50 is
// sorted[n//2] and p99 is sorted[int(0.99*n)] (float product, truncated, as
// Python computes it).
func nearestRank(sorted []float64) (p50, p99 float64) {
	n := len(sorted)
	if n == 0 {
		return 0, 0
	}
	return sorted[n/2], sorted[int(0.99*float64(n))]
}

// finish turns the accumulators into a Result; it sorts the duration lists
// in place.
func finish(model string, acc []fnAccum, peakTotal int) *Result {
	res := &Result{Model: model}
	tot := FunctionResult{Name: "TOTAL", PeakConcurrency: peakTotal}
	var all []float64
	for i := range acc {
		a := &acc[i]
		slices.Sort(a.durations)
		a.P50Ms, a.P99Ms = nearestRank(a.durations)
		res.Functions = append(res.Functions, a.FunctionResult)
		tot.add(&a.FunctionResult)
		if len(acc) > 1 {
			all = append(all, a.durations...)
		}
	}
	if len(acc) == 1 {
		all = acc[0].durations
	} else {
		slices.Sort(all)
	}
	tot.P50Ms, tot.P99Ms = nearestRank(all)
	res.Total = tot
	return res
}

func (t *FunctionResult) add(f *FunctionResult) {
	t.Invocations += f.Invocations
	t.Cold += f.Cold
	t.Warm += f.Warm
	t.Throttles += f.Throttles
	for r, n := range f.ThrottleReasons {
		if t.ThrottleReasons == nil {
			t.ThrottleReasons = map[quota.Reason]int64{}
		}
		t.ThrottleReasons[r] += n
	}
	t.BilledMs += f.BilledMs
	t.GBs += f.GBs
	t.ProvisionedGBs += f.ProvisionedGBs
	t.Provisioned += f.Provisioned
	t.ProvisionedHits += f.ProvisionedHits
	t.IdleGBs += f.IdleGBs
	t.Prewarms += f.Prewarms
}

func memGB(mb int) float64 { return float64(mb) / 1024 }

// Timeline samples a run over time for --plot: per bucket, the highest
// in-flight count and warm-pool size seen, and the cold starts and throttles.
type Timeline struct {
	Step        float64 `json:"step_s"`
	Concurrency []int   `json:"concurrency"`
	WarmPool    []int   `json:"warm_pool"` // idle sandboxes kept alive
	Sandboxes   []int   `json:"sandboxes"` // all live sandboxes
	Cold        []int   `json:"cold_starts"`
	Throttles   []int   `json:"throttles"`
}

func newTimeline(horizon float64, buckets int) *Timeline {
	if buckets <= 0 || !(horizon > 0) || math.IsInf(horizon, 0) {
		return nil
	}
	return &Timeline{
		Step:        horizon / float64(buckets),
		Concurrency: make([]int, buckets),
		WarmPool:    make([]int, buckets),
		Sandboxes:   make([]int, buckets),
		Cold:        make([]int, buckets),
		Throttles:   make([]int, buckets),
	}
}

// bucket is the bucket of t, or -1 past the horizon (the final evictions
// happen there and would show as a spurious last bucket).
func (tl *Timeline) bucket(t float64) int {
	i := int(t / tl.Step)
	if i >= len(tl.Cold) || i < 0 {
		return -1
	}
	return i
}

// observe records the state after a change at t.
func (tl *Timeline) observe(t float64, inflight, idle int) {
	if tl == nil {
		return
	}
	i := tl.bucket(t)
	if i < 0 {
		return
	}
	tl.Concurrency[i] = max(tl.Concurrency[i], inflight)
	tl.WarmPool[i] = max(tl.WarmPool[i], idle)
	tl.Sandboxes[i] = max(tl.Sandboxes[i], inflight+idle)
}

func (tl *Timeline) cold(t float64) {
	if tl != nil && tl.bucket(t) >= 0 {
		tl.Cold[tl.bucket(t)]++
	}
}

func (tl *Timeline) throttle(t float64) {
	if tl != nil && tl.bucket(t) >= 0 {
		tl.Throttles[tl.bucket(t)]++
	}
}
