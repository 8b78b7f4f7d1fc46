package sim

import (
	"math"
	"strconv"
	"time"

	"github.com/coldstart-dev/coldstart/worker/pool"
)

// SeedConfig is the seed article's model (serverless_sim.py): a fixed cold
// start added to the handler, a fixed keep-alive TTL, the oldest free
// sandbox reused first, billed ms including the cold start.
type SeedConfig struct {
	ColdStartMs float64 // cold_start_ms, 180 in the seed
	KeepAliveS  float64 // warm_pool_ttl_s, 600 in the seed
	MemoryMB    int     // functions without their own memory (the seed: 512)
	Prices      Prices
	Horizon     float64 // seconds; 0: the end of the last invocation
	PlotBuckets int     // > 0 records a Timeline
}

// DefaultSeedConfig is serverless_sim.py's Platform().
func DefaultSeedConfig() SeedConfig {
	p := DefaultPrices
	p.Requests = false // the seed charges duration only
	return SeedConfig{ColdStartMs: 180, KeepAliveS: 600, MemoryMB: 512, Prices: p}
}

// The seed model's clock. Python compares float seconds; to make the pool
// compare exactly the same way, the virtual time handed to worker/pool is the
// IEEE-754 bit pattern of the float. For non-negative floats that map is
// strictly increasing, so "a <= b" in the pool is "a <= b" in Python. The
// pool's eviction rule `now - LastUsed >= TTL` is then made exact by giving
// each released sandbox the TTL (in bit units) that reaches the first float
// at which Python's `(now - last_used) >= ttl` becomes true; see evictAt.
// A nanosecond clock would round both sides and can flip a comparison that
// Python decides by less than a nanosecond.
func seedClock(t float64) time.Duration   { return time.Duration(math.Float64bits(t)) }
func seedSeconds(c time.Duration) float64 { return math.Float64frombits(uint64(c)) }

// evictAt returns the smallest float x with fl(x - last) >= ttl: the first
// arrival time at which the seed evicts a sandbox idle since last. Float
// subtraction is monotonic in x, so a step or two of Nextafter from
// last+ttl finds it.
func evictAt(last, ttl float64) float64 {
	x := last + ttl
	if math.IsInf(x, 1) {
		return x
	}
	if x-last >= ttl {
		for {
			y := math.Nextafter(x, math.Inf(-1))
			if y < last || y-last < ttl {
				return x
			}
			x = y
		}
	}
	for x-last < ttl {
		x = math.Nextafter(x, math.Inf(1))
	}
	return x
}

// seedFn is one function's state; sandboxes point at it through Value.
type seedFn struct {
	fnAccum
	key    pool.Key
	handle *pool.KeyPool // skips hashing the key on every arrival
	idx    int32
}

type seedRun struct {
	cfg      SeedConfig
	pool     *pool.Pool
	fns      []seedFn
	heap     eventHeap
	seq      uint64
	inflight int
	peak     int
	tl       *Timeline
	onEvict  func(*pool.Sandbox)
	end      float64 // the last busy_until
}

// RunSeed replays tr through the seed's model. Each function has its own
// warm sandboxes (one seed Platform per function); a one-function trace is
// exactly the seed's simulate().
func RunSeed(tr *Trace, cfg SeedConfig) *Result {
	r := &seedRun{cfg: cfg, pool: pool.New(pool.Config{Reuse: pool.ReuseOldest, TTL: pool.Forever})}
	r.fns = make([]seedFn, len(tr.Functions))
	for i, f := range tr.Functions {
		k := pool.Key{Account: f.Account, Function: f.Name}
		r.fns[i] = seedFn{key: k, handle: r.pool.Handle(k), idx: int32(i)}
		r.fns[i].Name, r.fns[i].MemoryMB = f.Name, f.MemoryMB
		if f.MemoryMB == 0 {
			r.fns[i].MemoryMB = cfg.MemoryMB
		}
		r.fns[i].durations = make([]float64, 0, len(tr.Events)/max(1, len(tr.Functions)))
	}
	if cfg.PlotBuckets > 0 {
		r.tl = newTimeline(seedHorizon(tr, cfg), cfg.PlotBuckets)
	}
	r.onEvict = r.evicted
	for i := range tr.Events {
		r.arrive(&tr.Events[i])
	}
	for len(r.heap) > 0 {
		r.complete(r.heap.pop())
	}
	r.pool.Expire(seedClock(math.Inf(1)), r.onEvict)
	return r.result()
}

func seedHorizon(tr *Trace, cfg SeedConfig) float64 {
	if cfg.Horizon > 0 {
		return cfg.Horizon
	}
	maxDur := 0.0
	for _, e := range tr.Events {
		maxDur = math.Max(maxDur, e.DurMs)
	}
	return tr.End() + (cfg.ColdStartMs+maxDur)/1000
}

// arrive is the seed's Platform.invoke(now, handler_ms).
func (r *seedRun) arrive(e *Event) {
	now := seedClock(e.T)
	for len(r.heap) > 0 && r.heap[0].at <= now {
		r.complete(r.heap.pop())
	}
	r.pool.Expire(now, r.onEvict) // _evict_idle
	f := &r.fns[e.Fn]
	d := e.DurMs
	sb := r.pool.AcquireFrom(f.handle) // free[0]: the oldest-created free sandbox
	if sb != nil {
		f.Warm++
		f.IdleGBs += (e.T - seedSeconds(sb.LastUsed)) * memGB(f.MemoryMB)
	} else {
		r.seq++
		sb = r.pool.Add(strconv.FormatUint(r.seq, 36), f.key, now, pool.Forever)
		sb.Value = f
		f.Cold++
		d = r.cfg.ColdStartMs + e.DurMs
		r.tl.cold(e.T)
	}
	f.Invocations++
	f.BilledMs += d // the seed keeps ms exact, without rounding up
	f.started(d)
	r.inflight++
	r.peak = max(r.peak, r.inflight)
	busyUntil := e.T + d/1000.0
	r.seq++
	r.heap.push(event{at: seedClock(busyUntil), seq: r.seq, sb: sb, fn: e.Fn})
	r.tl.observe(e.T, r.inflight, r.pool.Idle())
}

// complete releases a sandbox at busy_until; last_used = busy_until.
func (r *seedRun) complete(ev event) {
	f := &r.fns[ev.fn]
	f.inflight--
	r.inflight--
	last := seedSeconds(ev.at)
	r.end = math.Max(r.end, last)
	// The sandbox is busy, so it is in no pool heap and its TTL may change.
	ev.sb.TTL = seedClock(evictAt(last, r.cfg.KeepAliveS)) - ev.at
	r.pool.Release(ev.sb, ev.at)
	r.tl.observe(last, r.inflight, r.pool.Idle())
}

func (r *seedRun) evicted(s *pool.Sandbox) {
	f := s.Value.(*seedFn)
	f.IdleGBs += r.cfg.KeepAliveS * memGB(f.MemoryMB)
	if r.tl != nil {
		r.tl.observe(seedSeconds(s.Expires()), r.inflight, r.pool.Idle())
	}
}

func (r *seedRun) result() *Result {
	acc := make([]fnAccum, len(r.fns))
	for i := range r.fns {
		f := &r.fns[i]
		f.GBs = f.BilledMs / 1000 * memGB(f.MemoryMB)
		acc[i] = f.fnAccum
	}
	res := finish("seed", acc, r.peak)
	res.HorizonS = r.end
	if r.cfg.Horizon > 0 {
		res.HorizonS = r.cfg.Horizon
	}
	res.Timeline = r.tl
	r.cfg.Prices.apply(res)
	return res
}
