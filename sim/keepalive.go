package sim

import (
	"math"
	"time"
)

// keepAlive decides how long a released sandbox stays warm. The full model
// asks it at every release; the pool then evicts by the answer.
type keepAlive interface {
	// arrival records an invocation of app at now; busy says whether the
	// app had an invocation in flight (then it was not idle).
	arrival(app int, now time.Duration, busy bool)
	// completed records the end of an invocation of app.
	completed(app int, at time.Duration)
	// windows returns the pre-warm window (unload now, load again after it;
	// 0 keeps the sandbox) and the keep-alive window that follows.
	windows(app int) (prewarm, keepAlive time.Duration)
}

// fixedTTL is the fixed keep-alive of Lambda and of the seed.
type fixedTTL time.Duration

func (fixedTTL) arrival(int, time.Duration, bool)             {}
func (fixedTTL) completed(int, time.Duration)                 {}
func (f fixedTTL) windows(int) (time.Duration, time.Duration) { return 0, time.Duration(f) }

// HybridConfig is the hybrid histogram policy of Shahrad et al., "Serverless
// in the Wild" (USENIX ATC 2020). Defaults are the paper's.
type HybridConfig struct {
	Range      time.Duration // histogram range: 4 h
	Bin        time.Duration // bin width: 1 minute
	Head       float64       // pre-warm percentile: 5th
	Tail       float64       // keep-alive percentile: 99th
	Margin     float64       // 10%: pre-warm shortened, keep-alive lengthened by it
	MinCV      float64       // below this CV of the bin counts the histogram is not representative: 2
	MaxOOB     float64       // share of idle times beyond Range that disqualifies it: 0.5
	MinSamples int           // fewer idle times than this are not representative
	Fallback   time.Duration // the fixed TTL used when the histogram is not representative
}

// DefaultHybrid returns the paper's parameters with fallback as the fixed TTL.
func DefaultHybrid(fallback time.Duration) HybridConfig {
	return HybridConfig{
		Range: 4 * time.Hour, Bin: time.Minute, Head: 0.05, Tail: 0.99, Margin: 0.10,
		MinCV: 2, MaxOOB: 0.5, MinSamples: 10, Fallback: fallback,
	}
}

// KeepAliveStats reports how the hybrid policy decided.
type KeepAliveStats struct {
	Policy    string `json:"policy"`
	Histogram int64  `json:"histogram_decisions"` // releases that used the histogram's windows
	Fallback  int64  `json:"fallback_decisions"`  // releases that fell back to the fixed TTL
}

// appHist is one app's idle-time histogram.
type appHist struct {
	bins    []uint32
	n       int64   // idle times within range
	oob     int64   // idle times beyond range
	sumSq   float64 // sum of squared bin counts, for the CV
	lastEnd time.Duration
	seen    bool // an invocation has completed
	dirty   bool
	pw, ka  time.Duration
	hist    bool // pw/ka came from the histogram
}

// hybrid implements keepAlive with per-app histograms.
type hybrid struct {
	cfg   HybridConfig
	apps  []appHist
	stats KeepAliveStats
}

func newHybrid(cfg HybridConfig, apps int) *hybrid {
	h := &hybrid{cfg: cfg, apps: make([]appHist, apps), stats: KeepAliveStats{Policy: "hybrid"}}
	nb := int(cfg.Range / cfg.Bin)
	for i := range h.apps {
		h.apps[i].bins = make([]uint32, nb)
		h.apps[i].dirty = true
	}
	return h
}

func (h *hybrid) arrival(app int, now time.Duration, busy bool) {
	a := &h.apps[app]
	if !a.seen && !busy {
		return // the first invocation follows no idle period
	}
	it := time.Duration(0)
	if !busy && now > a.lastEnd {
		it = now - a.lastEnd
	}
	h.record(a, it)
}

func (h *hybrid) record(a *appHist, it time.Duration) {
	b := int(it / h.cfg.Bin)
	if b >= len(a.bins) {
		a.oob++
	} else {
		c := float64(a.bins[b])
		a.sumSq += 2*c + 1 // (c+1)^2 - c^2
		a.bins[b]++
		a.n++
	}
	a.dirty = true
}

func (h *hybrid) completed(app int, at time.Duration) {
	a := &h.apps[app]
	a.seen = true
	a.lastEnd = max(a.lastEnd, at)
}

func (h *hybrid) windows(app int) (time.Duration, time.Duration) {
	a := &h.apps[app]
	if a.dirty {
		a.pw, a.ka, a.hist = h.decide(a)
		a.dirty = false
	}
	if a.hist {
		h.stats.Histogram++
	} else {
		h.stats.Fallback++
	}
	return a.pw, a.ka
}

// decide computes an app's windows from its histogram, or falls back.
func (h *hybrid) decide(a *appHist) (pw, ka time.Duration, hist bool) {
	if !h.representative(a) {
		return 0, h.cfg.Fallback, false
	}
	head, tail := h.percentileBin(a, h.cfg.Head), h.percentileBin(a, h.cfg.Tail)
	// The pre-warm window ends at the head bin's lower edge less the margin;
	// the sandbox then lives until the tail bin's upper edge plus the margin.
	pw = time.Duration(float64(time.Duration(head)*h.cfg.Bin) * (1 - h.cfg.Margin))
	end := time.Duration(float64(time.Duration(tail+1)*h.cfg.Bin) * (1 + h.cfg.Margin))
	return pw, end - pw, true
}

// representative: enough samples, few beyond the range, and a peaked
// histogram (a flat one, with a low CV of bin counts, predicts nothing).
func (h *hybrid) representative(a *appHist) bool {
	total := a.n + a.oob
	if total < int64(h.cfg.MinSamples) || a.n == 0 {
		return false
	}
	if float64(a.oob)/float64(total) >= h.cfg.MaxOOB {
		return false
	}
	return binCV(a.n, a.sumSq, len(a.bins)) >= h.cfg.MinCV
}

// binCV is the coefficient of variation of the bin counts (sample standard
// deviation over mean), from their sum n and sum of squares.
func binCV(n int64, sumSq float64, bins int) float64 {
	if bins < 2 || n == 0 {
		return 0
	}
	b := float64(bins)
	mean := float64(n) / b
	v := (sumSq - b*mean*mean) / (b - 1)
	return math.Sqrt(math.Max(v, 0)) / mean
}

// percentileBin is the first bin at which the cumulative share reaches q.
func (h *hybrid) percentileBin(a *appHist, q float64) int {
	var cum int64
	for i, c := range a.bins {
		cum += int64(c)
		if float64(cum) >= q*float64(a.n) {
			return i
		}
	}
	return len(a.bins) - 1
}
