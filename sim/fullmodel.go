package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// FunctionConfig is one function's platform settings in the full model.
type FunctionConfig struct {
	MemoryMB    int           // 0: the trace's memory, else 512
	Runtime     string        // cold-start phase profile (synthetic.DefaultProfile)
	ColdStart   time.Duration // fixed whole cold start; < 0: draw the runtime's phases
	Provisioned int           // provisioned concurrency (pre-warmed, never evicted)
	Reserved    int           // reserved concurrency; < 0: none
}

// FullConfig is the full model: cold-start phases, memory, provisioned and
// reserved concurrency, the account limit and scaling rate, keep-alive.
type FullConfig struct {
	Default      FunctionConfig
	Overrides    map[string]FunctionConfig // by function name, replacing Default
	AccountLimit int                       // per account
	Rate         quota.Rate                // per-function scaling rate; zero: unlimited
	KeepAlive    time.Duration             // fixed TTL (and the hybrid policy's fallback)
	Hybrid       *HybridConfig             // nil: fixed TTL
	Seed         uint64                    // cold-start phase draws
	Prices       Prices
	Horizon      time.Duration // provisioned billing window; 0: the end of the run
	PlotBuckets  int
	Observer     Observer // optional, for tests and tools
}

// DefaultFullConfig is Lambda's defaults with the seed's handler settings.
func DefaultFullConfig() FullConfig {
	return FullConfig{
		Default:      FunctionConfig{MemoryMB: 0, Runtime: "python3.12", ColdStart: -1, Reserved: -1},
		AccountLimit: quota.DefaultAccountLimit,
		Rate:         quota.DefaultRate,
		KeepAlive:    10 * time.Minute,
		Prices:       DefaultPrices,
	}
}

// Observer sees every decision of the full model (times are virtual).
type Observer interface {
	Started(fn int, start, end time.Duration, cold bool)
	Throttled(fn int, at time.Duration, reason quota.Reason)
	Created(fn int, at time.Duration) // a new sandbox (cold start or pre-warm)
}

// ErrConfig is wrapped by invalid full-model settings.
var ErrConfig = errors.New("invalid configuration")

type fullFn struct {
	fnAccum
	cfg     FunctionConfig
	profile synthetic.Profile
	key     pool.Key
	idx     int
	acct    int
	app     int
	bucket  quota.Bucket
	class   quota.Class // what its sandboxes are admitted as
}

type fullAcct struct {
	name                 string
	limit, reservedTotal int
}

type fullRun struct {
	cfg      *FullConfig
	pool     *pool.Pool
	fns      []fullFn
	byKey    map[pool.Key]*fullFn
	accts    []fullAcct
	acc      *quota.Accounting // the placement ledger's counts, kept the same way
	heap     eventHeap
	seq      uint64
	ids      uint64
	rng      *rand.Rand
	ka       keepAlive
	inflight int
	peak     int
	tl       *Timeline
	onEvict  func(*pool.Sandbox)
	end      time.Duration // last completion
}

func secDur(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }
func msDur(ms float64) time.Duration { return time.Duration(math.Round(ms * 1e6)) }

// RunFull replays tr through the full model.
func RunFull(tr *Trace, cfg FullConfig) (*Result, error) {
	r, err := newFullRun(tr, &cfg)
	if err != nil {
		return nil, err
	}
	for i := range tr.Events {
		r.arrive(&tr.Events[i])
	}
	for len(r.heap) > 0 {
		ev := r.heap.pop()
		r.expire(ev.at)
		r.handle(ev)
	}
	r.expire(pool.Forever - 1)
	return r.result(tr), nil
}

func newFullRun(tr *Trace, cfg *FullConfig) (*fullRun, error) {
	r := &fullRun{
		cfg:   cfg,
		pool:  pool.New(pool.Config{Reuse: pool.ReuseOldest, TTL: cfg.KeepAlive}),
		byKey: map[pool.Key]*fullFn{},
		acc:   quota.NewAccounting(),
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x636f6c64)),
	}
	r.onEvict = r.evicted
	if err := r.setupFunctions(tr); err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if cfg.PlotBuckets > 0 {
		r.tl = newTimeline(fullHorizon(tr, cfg).Seconds(), cfg.PlotBuckets)
	}
	r.provision()
	return r, nil
}

func (r *fullRun) setupFunctions(tr *Trace) error {
	accts, apps := map[string]int{}, map[string]int{}
	r.fns = make([]fullFn, len(tr.Functions))
	for i, f := range tr.Functions {
		fc, ok := r.cfg.Overrides[f.Name]
		if !ok {
			fc = r.cfg.Default
		}
		if fc.MemoryMB == 0 {
			fc.MemoryMB = f.MemoryMB
		}
		if fc.MemoryMB == 0 {
			fc.MemoryMB = 512
		}
		if _, ok := accts[f.Account]; !ok {
			accts[f.Account] = len(r.accts)
			r.accts = append(r.accts, fullAcct{name: f.Account, limit: r.cfg.AccountLimit})
		}
		if _, ok := apps[f.Account+"/"+f.App]; !ok {
			apps[f.Account+"/"+f.App] = len(apps)
		}
		x := &r.fns[i]
		*x = fullFn{cfg: fc, profile: synthetic.DefaultProfile(fc.Runtime), idx: i,
			key: pool.Key{Account: f.Account, Function: f.Name}, acct: accts[f.Account], app: apps[f.Account+"/"+f.App],
			bucket: quota.NewBucket(r.cfg.Rate, 0)}
		x.Name, x.MemoryMB, x.Provisioned = f.Name, fc.MemoryMB, fc.Provisioned
		x.class = quota.Class{Account: f.Account, Function: f.Name, Pool: quota.PoolFor(quota.Function{HasReserved: fc.Reserved >= 0})}
		r.byKey[x.key] = x
	}
	if r.cfg.Hybrid != nil {
		r.ka = newHybrid(*r.cfg.Hybrid, len(apps))
	} else {
		r.ka = fixedTTL(r.cfg.KeepAlive)
	}
	return nil
}

// validate applies Lambda's rules through quota's own checks.
func (r *fullRun) validate() error {
	if r.cfg.AccountLimit < 1 {
		return fmt.Errorf("%w: account limit must be at least 1", ErrConfig)
	}
	pc := make([]int, len(r.accts))
	pcUnreserved := make([]int, len(r.accts))
	for i := range r.fns {
		f := &r.fns[i]
		a := &r.accts[f.acct]
		if f.cfg.Provisioned < 0 {
			return fmt.Errorf("%w: %s: provisioned concurrency must be >= 0", ErrConfig, f.Name)
		}
		if f.cfg.Reserved >= 0 {
			if err := quota.CheckReserved(a.limit, a.reservedTotal, f.cfg.Reserved); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrConfig, f.Name, err)
			}
			if f.cfg.Provisioned > f.cfg.Reserved {
				return fmt.Errorf("%w: %s: provisioned concurrency %d exceeds reserved concurrency %d", ErrConfig, f.Name, f.cfg.Provisioned, f.cfg.Reserved)
			}
			a.reservedTotal += f.cfg.Reserved
		} else {
			pcUnreserved[f.acct] += f.cfg.Provisioned
		}
		pc[f.acct] += f.cfg.Provisioned
	}
	for i, a := range r.accts {
		if pc[i] > a.limit || pcUnreserved[i] > quota.UnreservedCap(quota.Account{Limit: a.limit, ReservedTotal: a.reservedTotal}) {
			return fmt.Errorf("%w: provisioned concurrency %d does not fit the account limit %d", ErrConfig, pc[i], a.limit)
		}
	}
	return nil
}

// provision pre-warms provisioned concurrency before time zero, as the seed's
// exercise asks ("pre-creating 50 warm sandboxes before time zero").
func (r *fullRun) provision() {
	for i := range r.fns {
		f := &r.fns[i]
		for k := 0; k < f.cfg.Provisioned; k++ {
			sb := r.pool.AddIdle(r.newID(), f.key, 0, pool.Forever, true)
			sb.Value = f
			r.created(f)
		}
	}
}

func (r *fullRun) newID() string {
	r.ids++
	return strconv.FormatUint(r.ids, 36)
}

func (r *fullRun) acctQuota(a *fullAcct) quota.Account {
	return quota.Account{Limit: a.limit, ReservedTotal: a.reservedTotal, Sandboxes: r.acc.Sandboxes(a.name), Unreserved: r.acc.Unreserved(a.name)}
}

func (r *fullRun) fnQuota(f *fullFn) quota.Function {
	return quota.Function{Reserved: f.cfg.Reserved, HasReserved: f.cfg.Reserved >= 0, Sandboxes: r.acc.Function(f.class.Account, f.class.Function, 0)}
}

func (r *fullRun) created(f *fullFn) { r.acc.Add(f.class) }

func (r *fullRun) removed(f *fullFn) { r.acc.Remove(f.class) }

// advance runs timed events up to now, with evictions in deadline order
// before each, so capacity and the timeline change at their true times.
func (r *fullRun) advance(now time.Duration) {
	for len(r.heap) > 0 && r.heap[0].at <= now {
		ev := r.heap.pop()
		r.expire(ev.at)
		r.handle(ev)
	}
	r.expire(now)
}

func (r *fullRun) expire(now time.Duration) {
	if t, ok := r.pool.NextExpiry(); ok && t <= now {
		r.pool.Expire(now, r.onEvict)
	}
}

func (r *fullRun) evicted(s *pool.Sandbox) {
	f := s.Value.(*fullFn)
	r.removed(f)
	f.IdleGBs += s.TTL.Seconds() * memGB(f.MemoryMB)
	r.tl.observe(s.Expires().Seconds(), r.inflight, r.pool.Idle())
}

func (r *fullRun) handle(ev event) {
	switch ev.kind {
	case evComplete:
		r.complete(ev)
	case evPrewarm:
		r.prewarm(ev)
	}
}

// arrive serves one request: a warm sandbox if one is idle, else a new one
// if quota admits it (reclaiming an idle one at the limit), else a throttle.
func (r *fullRun) arrive(e *Event) {
	now := secDur(e.T)
	r.advance(now)
	f := &r.fns[e.Fn]
	r.ka.arrival(f.app, now, f.inflight > 0)
	if sb := r.pool.Acquire(f.key); sb != nil {
		if !sb.Provisioned {
			f.IdleGBs += (now - sb.LastUsed).Seconds() * memGB(f.MemoryMB)
		}
		r.start(f, sb, now, 0, msDur(e.DurMs), false)
		return
	}
	sb, reason := r.newSandbox(f, now)
	if sb == nil {
		f.throttled(reason)
		r.tl.throttle(e.T)
		if r.cfg.Observer != nil {
			r.cfg.Observer.Throttled(f.idx, now, reason)
		}
		return
	}
	r.tl.cold(e.T)
	r.start(f, sb, now, r.coldStart(f), msDur(e.DurMs), true)
}

func (r *fullRun) coldStart(f *fullFn) time.Duration {
	if f.cfg.ColdStart >= 0 {
		return f.cfg.ColdStart
	}
	return f.profile.DrawCold(r.rng).Total()
}

// newSandbox asks quota for one more sandbox of f, as placement does.
func (r *fullRun) newSandbox(f *fullFn, now time.Duration) (*pool.Sandbox, quota.Reason) {
	a := &r.accts[f.acct]
	d := quota.Admit(r.acctQuota(a), r.fnQuota(f))
	if !d.Admit && d.Reclaim == quota.ScopeNone {
		return nil, d.Reason
	}
	if !f.bucket.Available(r.cfg.Rate, now) {
		return nil, quota.RateReason(r.fnQuota(f))
	}
	if !d.Admit {
		if !r.reclaim(f, now, d.Reclaim) {
			return nil, d.Reason
		}
		if d = quota.Admit(r.acctQuota(a), r.fnQuota(f)); !d.Admit {
			return nil, d.Reason
		}
	}
	f.bucket.Take(r.cfg.Rate, now)
	sb := r.pool.Add(r.newID(), f.key, now, 0)
	sb.Value = f
	r.created(f)
	if r.cfg.Observer != nil {
		r.cfg.Observer.Created(f.idx, now)
	}
	return sb, ""
}

// reclaim retires the least recently used idle sandbox in scope: at the
// limit, placement makes room rather than throttle while capacity idles.
func (r *fullRun) reclaim(f *fullFn, now time.Duration, scope quota.Scope) bool {
	victim := r.pool.LeastRecentlyUsed(func(k pool.Key) bool {
		v := r.byKey[k]
		return quota.InScope(quota.Idle{Account: k.Account, Function: k.Function, Reserved: v.cfg.Reserved >= 0}, f.key.Account, f.key.Function, scope)
	})
	if victim == nil {
		return false
	}
	v := victim.Value.(*fullFn)
	v.IdleGBs += (now - victim.LastUsed).Seconds() * memGB(v.MemoryMB)
	r.pool.Remove(victim)
	r.removed(v)
	return true
}

func (r *fullRun) start(f *fullFn, sb *pool.Sandbox, now, init, handler time.Duration, cold bool) {
	total := init + handler
	billedMs := float64((total + time.Millisecond - 1) / time.Millisecond) // Lambda rounds up to 1 ms
	gbs := billedMs / 1000 * memGB(f.MemoryMB)
	f.Invocations++
	if cold {
		f.Cold++
	} else {
		f.Warm++
	}
	if sb.Provisioned {
		f.ProvisionedHits++
		f.ProvisionedGBs += gbs
	}
	f.BilledMs += billedMs
	f.GBs += gbs
	f.started(float64(total) / float64(time.Millisecond))
	r.inflight++
	r.peak = max(r.peak, r.inflight)
	r.seq++
	r.heap.push(event{at: now + total, seq: r.seq, sb: sb, fn: int32(f.idx), kind: evComplete})
	r.tl.observe(now.Seconds(), r.inflight, r.pool.Idle())
	if r.cfg.Observer != nil {
		r.cfg.Observer.Started(f.idx, now, now+total, cold)
	}
}

// complete releases a sandbox with the keep-alive policy's answer.
func (r *fullRun) complete(ev event) {
	f := &r.fns[ev.fn]
	f.inflight--
	r.inflight--
	r.end = max(r.end, ev.at)
	r.ka.completed(f.app, ev.at)
	sb := ev.sb
	ttl := sb.TTL
	if !sb.Provisioned {
		pw, ka := r.ka.windows(f.app)
		if pw > 0 {
			// Unload now and load again just before the predicted next use.
			r.pool.Remove(sb)
			r.removed(f)
			r.seq++
			r.heap.push(event{at: ev.at + pw, seq: r.seq, ttl: ka, fn: ev.fn, kind: evPrewarm})
			r.tl.observe(ev.at.Seconds(), r.inflight, r.pool.Idle())
			return
		}
		ttl = ka
	}
	r.pool.ReleaseFor(sb, ev.at, ttl)
	r.tl.observe(ev.at.Seconds(), r.inflight, r.pool.Idle())
}

// prewarm loads a sandbox for the hybrid policy if quota admits one now.
func (r *fullRun) prewarm(ev event) {
	f := &r.fns[ev.fn]
	if ev.ttl <= 0 || !quota.Admit(r.acctQuota(&r.accts[f.acct]), r.fnQuota(f)).Admit || !f.bucket.Take(r.cfg.Rate, ev.at) {
		return
	}
	sb := r.pool.AddIdle(r.newID(), f.key, ev.at, ev.ttl, false)
	sb.Value = f
	r.created(f)
	f.Prewarms++
	if r.cfg.Observer != nil {
		r.cfg.Observer.Created(f.idx, ev.at)
	}
	r.tl.observe(ev.at.Seconds(), r.inflight, r.pool.Idle())
}

func fullHorizon(tr *Trace, cfg *FullConfig) time.Duration {
	if cfg.Horizon > 0 {
		return cfg.Horizon
	}
	maxDur := 0.0
	for _, e := range tr.Events {
		maxDur = math.Max(maxDur, e.DurMs)
	}
	return secDur(tr.End()) + msDur(maxDur) + 10*time.Second
}

func (r *fullRun) result(tr *Trace) *Result {
	acc := make([]fnAccum, len(r.fns))
	for i := range r.fns {
		acc[i] = r.fns[i].fnAccum
	}
	res := finish("full", acc, r.peak)
	res.HorizonS = r.end.Seconds()
	if r.cfg.Horizon > 0 {
		res.HorizonS = r.cfg.Horizon.Seconds()
	}
	res.Timeline = r.tl
	if h, ok := r.ka.(*hybrid); ok {
		st := h.stats
		res.KeepAlive = &st
	}
	r.cfg.Prices.apply(res)
	return res
}
