package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// record is one decision seen through the Observer.
type record struct {
	fn         int
	start, end time.Duration
	cold       bool
	throttled  bool
	reason     quota.Reason
}

type recorder struct {
	recs    []record
	created map[int][]time.Duration
}

func (r *recorder) Started(fn int, start, end time.Duration, cold bool) {
	r.recs = append(r.recs, record{fn: fn, start: start, end: end, cold: cold})
}
func (r *recorder) Throttled(fn int, at time.Duration, reason quota.Reason) {
	r.recs = append(r.recs, record{fn: fn, start: at, throttled: true, reason: reason})
}
func (r *recorder) Created(fn int, at time.Duration) {
	if r.created == nil {
		r.created = map[int][]time.Duration{}
	}
	r.created[fn] = append(r.created[fn], at)
}

// refSandbox and reference are a brute-force model of the same rules, written
// from the spec rather than from the engine: a plain list scanned at every
// arrival, like the seed's Python, with the limits counted from scratch.
type refSandbox struct {
	fn          int
	seq         int
	id          string
	busyUntil   time.Duration
	provisioned bool
}

type reference struct {
	tr      *Trace
	cfg     FullConfig
	sbs     []*refSandbox
	seq     int
	ids     uint64
	recs    []record
	reserve []int // -1: none
}

func (r *reference) newSB(fn int, busyUntil time.Duration, prov bool) *refSandbox {
	r.seq++
	r.ids++
	s := &refSandbox{fn: fn, seq: r.seq, id: strconv.FormatUint(r.ids, 36), busyUntil: busyUntil, provisioned: prov}
	r.sbs = append(r.sbs, s)
	return s
}

func (r *reference) run() []record {
	for fn := range r.tr.Functions {
		for k := 0; k < r.cfg.Overrides[r.tr.Functions[fn].Name].Provisioned; k++ {
			r.newSB(fn, 0, true)
		}
	}
	for _, e := range r.tr.Events {
		r.arrive(e)
	}
	return r.recs
}

func (r *reference) account(fn int) string { return r.tr.Functions[fn].Account }

func (r *reference) arrive(e Event) {
	now, fn := secDur(e.T), int(e.Fn)
	ttl := r.cfg.KeepAlive
	live := r.sbs[:0]
	for _, s := range r.sbs { // evict: idle, not provisioned, idle for >= TTL
		if s.provisioned || s.busyUntil > now || now-s.busyUntil < ttl {
			live = append(live, s)
		}
	}
	r.sbs = live
	var pick *refSandbox
	for _, s := range r.sbs {
		if s.fn == fn && s.busyUntil <= now && (pick == nil || s.provisioned && !pick.provisioned ||
			s.provisioned == pick.provisioned && s.seq < pick.seq) {
			pick = s
		}
	}
	h := msDur(e.DurMs)
	if pick != nil {
		pick.busyUntil = now + h
		r.recs = append(r.recs, record{fn: fn, start: now, end: now + h})
		return
	}
	if reason := r.admit(fn, now); reason != "" {
		r.recs = append(r.recs, record{fn: fn, start: now, throttled: true, reason: reason})
		return
	}
	c := r.cfg.Overrides[r.tr.Functions[fn].Name].ColdStart
	r.newSB(fn, now+c+h, false)
	r.recs = append(r.recs, record{fn: fn, start: now, end: now + c + h, cold: true})
}

// admit counts sandboxes and applies Lambda's rules; at a limit it retires
// the least recently used idle unreserved sandbox of the account.
func (r *reference) admit(fn int, now time.Duration) quota.Reason {
	limit, acct := r.cfg.AccountLimit, r.account(fn)
	count := func(match func(s *refSandbox) bool) int {
		n := 0
		for _, s := range r.sbs {
			if match(s) {
				n++
			}
		}
		return n
	}
	reservedTotal := 0
	for i, f := range r.tr.Functions {
		if f.Account == acct && r.reserve[i] >= 0 {
			reservedTotal += r.reserve[i]
		}
	}
	inAcct := func(s *refSandbox) bool { return r.account(s.fn) == acct }
	unres := func(s *refSandbox) bool { return inAcct(s) && r.reserve[s.fn] < 0 }
	if res := r.reserve[fn]; res >= 0 {
		if res == 0 || count(func(s *refSandbox) bool { return s.fn == fn }) >= res {
			return quota.ReasonReservedConcurrency // no idle sandbox of fn exists, or it would have been used
		}
		if count(inAcct) < limit {
			return ""
		}
	} else if count(unres) < limit-reservedTotal && count(inAcct) < limit {
		return ""
	}
	var victim *refSandbox
	for _, s := range r.sbs {
		if unres(s) && !s.provisioned && s.busyUntil <= now &&
			(victim == nil || s.busyUntil < victim.busyUntil || s.busyUntil == victim.busyUntil && s.id < victim.id) {
			victim = s
		}
	}
	if victim == nil {
		return quota.ReasonAccountConcurrency
	}
	r.sbs = slices.DeleteFunc(r.sbs, func(s *refSandbox) bool { return s == victim })
	return ""
}

// randomCase draws a small multi-function, multi-account trace with ties,
// and limits tight enough to throttle.
func randomCase(rng *rand.Rand) (*Trace, FullConfig) {
	tr := &Trace{}
	nf := 1 + rng.IntN(4)
	for i := 0; i < nf; i++ {
		tr.Functions = append(tr.Functions, Function{Name: "f" + strconv.Itoa(i), App: "f" + strconv.Itoa(i), Account: "a" + strconv.Itoa(rng.IntN(2)), MemoryMB: 128 << rng.IntN(3)})
	}
	n := 50 + rng.IntN(300)
	durs := []float64{0, 1, 50, 80, 200, 1000, 2500}
	for i := 0; i < n; i++ {
		tr.Events = append(tr.Events, Event{T: float64(rng.IntN(20000)) / 1000, DurMs: durs[rng.IntN(len(durs))], Fn: int32(rng.IntN(nf))})
	}
	sortEvents(tr.Events)
	cfg := DefaultFullConfig()
	cfg.AccountLimit = 1 + rng.IntN(12)
	cfg.Rate = quota.Rate{} // the scaling rate has its own invariant below
	cfg.KeepAlive = []time.Duration{time.Millisecond, 300 * time.Millisecond, 2 * time.Second, time.Minute}[rng.IntN(4)]
	cfg.Overrides = map[string]FunctionConfig{}
	reserved := map[string]int{}
	for _, f := range tr.Functions {
		fc := FunctionConfig{ColdStart: time.Duration(rng.IntN(3)) * 100 * time.Millisecond, Reserved: -1}
		if rng.IntN(3) == 0 && quota.CheckReserved(cfg.AccountLimit, reserved[f.Account], 0) == nil {
			room := cfg.AccountLimit - reserved[f.Account] - quota.Minimum(cfg.AccountLimit)
			fc.Reserved = rng.IntN(max(room, 0) + 1)
			reserved[f.Account] += fc.Reserved
		}
		if rng.IntN(3) == 0 {
			fc.Provisioned = rng.IntN(3)
			if fc.Reserved >= 0 {
				fc.Provisioned = min(fc.Provisioned, fc.Reserved)
			}
		}
		cfg.Overrides[f.Name] = fc
	}
	return tr, cfg
}

func TestFullModelMatchesBruteForceReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ran := 0
	var seen FunctionResult // the cases must reach every branch: warm, cold, both throttle kinds
	for iter := 0; iter < 300; iter++ {
		tr, cfg := randomCase(rng)
		rec := &recorder{}
		cfg.Observer = rec
		res, err := RunFull(tr, cfg)
		if err != nil {
			continue // a provisioned total that does not fit the limit: validated elsewhere
		}
		ran++
		ref := &reference{tr: tr, cfg: cfg}
		for _, f := range tr.Functions {
			ref.reserve = append(ref.reserve, cfg.Overrides[f.Name].Reserved)
		}
		want := ref.run()
		if !slices.Equal(rec.recs, want) {
			i := firstDiff(rec.recs, want)
			t.Fatalf("case %d: decision %d differs: engine %+v, reference %+v", iter, i, at(rec.recs, i), at(want, i))
		}
		checkInvariants(t, fmt.Sprintf("case %d", iter), tr, cfg, res, rec)
		seen.add(&res.Total)
	}
	if seen.Warm == 0 || seen.Cold == 0 || seen.ProvisionedHits == 0 ||
		seen.ThrottleReasons[quota.ReasonAccountConcurrency] == 0 || seen.ThrottleReasons[quota.ReasonReservedConcurrency] == 0 {
		t.Fatalf("random cases missed a branch: %+v", seen)
	}
	if ran < 200 {
		t.Fatalf("only %d of 300 random cases had a valid configuration", ran)
	}
}

func firstDiff(a, b []record) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func at(r []record, i int) any {
	if i < len(r) {
		return r[i]
	}
	return "none"
}

// checkInvariants: every request is counted once, and a sweep line over the
// invocations never finds more in flight than the account limit (or a
// function's reserved concurrency).
func checkInvariants(t *testing.T, name string, tr *Trace, cfg FullConfig, res *Result, rec *recorder) {
	t.Helper()
	var tot int64
	for i, f := range res.Functions {
		if f.Invocations != f.Cold+f.Warm+f.Throttles {
			t.Fatalf("%s: %s: %d requests != %d cold + %d warm + %d throttled", name, f.Name, f.Invocations, f.Cold, f.Warm, f.Throttles)
		}
		var n int64
		for _, e := range tr.Events {
			if int(e.Fn) == i {
				n++
			}
		}
		if f.Invocations != n {
			t.Fatalf("%s: %s counted %d requests, trace has %d", name, f.Name, f.Invocations, n)
		}
		tot += f.Invocations
	}
	if tot != int64(len(tr.Events)) || res.Total.Invocations != tot || int64(len(rec.recs)) != tot {
		t.Fatalf("%s: total %d, records %d, trace %d", name, res.Total.Invocations, len(rec.recs), len(tr.Events))
	}
	type edge struct {
		at    time.Duration
		delta int
	}
	perAcct, perFn := map[string][]edge{}, map[int][]edge{}
	for _, r := range rec.recs {
		if r.throttled {
			continue
		}
		a := tr.Functions[r.fn].Account
		perAcct[a] = append(perAcct[a], edge{r.start, 1}, edge{r.end, -1})
		perFn[r.fn] = append(perFn[r.fn], edge{r.start, 1}, edge{r.end, -1})
	}
	peak := func(es []edge) int {
		// Ends sort before starts at the same instant: a finished sandbox is
		// free for the request that arrives then.
		slices.SortFunc(es, func(x, y edge) int {
			if x.at != y.at {
				return int(x.at - y.at)
			}
			return x.delta - y.delta
		})
		cur, m := 0, 0
		for _, e := range es {
			cur += e.delta
			m = max(m, cur)
		}
		return m
	}
	for a, es := range perAcct {
		if p := peak(es); p > cfg.AccountLimit {
			t.Fatalf("%s: account %s had %d in flight, limit %d", name, a, p, cfg.AccountLimit)
		}
	}
	for fn, es := range perFn {
		if r := fnConfig(cfg, tr.Functions[fn].Name).Reserved; r >= 0 && peak(es) > r {
			t.Fatalf("%s: %s had %d in flight, reserved %d", name, tr.Functions[fn].Name, peak(es), r)
		}
	}
}

func fnConfig(cfg FullConfig, name string) FunctionConfig {
	if fc, ok := cfg.Overrides[name]; ok {
		return fc
	}
	return cfg.Default
}

// The scaling rate: in any interval of length L a function creates at most
// Burst + L*Burst/Window sandboxes (a token bucket, refilled continuously).
func TestFullModelScalingRateInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 50; iter++ {
		tr, cfg := randomCase(rng)
		cfg.AccountLimit = 1000
		cfg.Overrides = nil
		cfg.Default = FunctionConfig{ColdStart: 100 * time.Millisecond, Reserved: -1}
		cfg.Rate = quota.Rate{Burst: 1 + rng.IntN(5), Window: time.Duration(1+rng.IntN(5)) * time.Second}
		cfg.KeepAlive = time.Millisecond
		rec := &recorder{}
		cfg.Observer = rec
		res, err := RunFull(tr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, fmt.Sprintf("rate case %d", iter), tr, cfg, res, rec)
		for fn, ts := range rec.created {
			for i := range ts {
				for j := i; j < len(ts); j++ {
					allowed := float64(cfg.Rate.Burst) + float64(ts[j]-ts[i])*float64(cfg.Rate.Burst)/float64(cfg.Rate.Window)
					if float64(j-i+1) > allowed+1e-9 {
						t.Fatalf("case %d fn %d: %d sandboxes created in %v, rate allows %.2f", iter, fn, j-i+1, ts[j]-ts[i], allowed)
					}
				}
			}
		}
		if res.Total.Throttles > 0 && res.Total.ThrottleReasons[quota.ReasonFunctionRate] == 0 {
			t.Fatalf("case %d: throttles without the rate reason: %v", iter, res.Total.ThrottleReasons)
		}
	}
}

func TestFullModelProvisionedConcurrency(t *testing.T) {
	tr := burst(100, 0.0001, 80) // 100 requests within 10 ms, before any ends
	cfg := DefaultFullConfig()
	cfg.Default.ColdStart = 180 * time.Millisecond
	cfg.Default.Provisioned = 50
	res, err := RunFull(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := res.Total
	if f.ProvisionedHits != 50 || f.Cold != 50 || f.Warm != 50 {
		t.Fatalf("50 provisioned sandboxes should serve the first 50 of a burst: %+v", f)
	}
	if math.Abs(f.ProvisionedGBs-50*0.08*0.5) > 1e-9 {
		t.Fatalf("provisioned GB-s %v, want %v", f.ProvisionedGBs, 50*0.08*0.5)
	}
	cfg.Default.Provisioned = 0
	cfg.Default.Reserved = 10
	cfg.AccountLimit = 200
	res, err = RunFull(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Cold != 10 || res.Total.Throttles != 90 || res.Total.ThrottleReasons[quota.ReasonReservedConcurrency] != 90 {
		t.Fatalf("reserved 10 should admit 10 and throttle 90 of a burst: %+v", res.Total)
	}
	cfg.Default.Provisioned = 20
	if _, err := RunFull(tr, cfg); err == nil {
		t.Fatal("provisioned above reserved concurrency was accepted")
	}
}

// burst is n requests of one function, gap seconds apart.
func burst(n int, gap, durMs float64) *Trace {
	tr := &Trace{Functions: []Function{{Name: "f", App: "f", Account: DefaultAccount}}}
	for i := 0; i < n; i++ {
		tr.Events = append(tr.Events, Event{T: float64(i) * gap, DurMs: durMs})
	}
	return tr
}

// A function called every 30 minutes cold-starts every time under a 10-minute
// TTL; the hybrid policy learns the period and pre-warms just before it.
func TestHybridPolicyPrewarmsPeriodicFunction(t *testing.T) {
	tr := burst(48, 1800, 100)
	cfg := DefaultFullConfig()
	cfg.Default.ColdStart = 200 * time.Millisecond
	fixed, err := RunFull(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := DefaultHybrid(cfg.KeepAlive)
	cfg.Hybrid = &h
	hyb, err := RunFull(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if fixed.Total.Cold != 48 {
		t.Fatalf("fixed 10-minute TTL: %d cold starts of 48, want all", fixed.Total.Cold)
	}
	// MinSamples idle times are needed before the histogram is trusted.
	if hyb.Total.Cold > int64(h.MinSamples)+1 || hyb.Total.Prewarms < 30 {
		t.Fatalf("hybrid: %d cold starts, %d pre-warms; want at most %d cold", hyb.Total.Cold, hyb.Total.Prewarms, h.MinSamples+1)
	}
	if hyb.Total.IdleGBs >= fixed.Total.IdleGBs {
		t.Fatalf("hybrid held %v idle GB-s, fixed %v: pre-warming should hold less", hyb.Total.IdleGBs, fixed.Total.IdleGBs)
	}
}

func TestFullModelSeedSettingsAgreeWithSeedModel(t *testing.T) {
	// With the seed's fixed cold start and TTL and no limits in reach, the
	// full model makes the seed model's decisions (its clock is nanoseconds
	// and it rounds billing up to 1 ms, which integral durations do not see).
	h, _ := ParseHandler("choice:80ms|200ms")
	tr, err := Generate([]ShapeSpec{{Name: "f", Shape: ShapeSpike, Rate: 5, Peak: 400, Duration: 120 * time.Second, Seed: 9, Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	seed := RunSeed(tr, DefaultSeedConfig())
	cfg := DefaultFullConfig()
	cfg.Default.ColdStart = 180 * time.Millisecond
	full, err := RunFull(tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, f := seed.Total, full.Total
	if s.Cold != f.Cold || s.Warm != f.Warm || s.P99Ms != f.P99Ms || s.BilledMs != f.BilledMs || f.Throttles != 0 {
		t.Fatalf("seed %+v\nfull %+v", s, f)
	}
}

// The hybrid policy unloads and pre-warms sandboxes; the limits must hold
// through that too.
func TestFullModelHybridInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var prewarms int64
	for iter := 0; iter < 100; iter++ {
		tr, cfg := randomCase(rng)
		cfg.Hybrid = &HybridConfig{Range: 10 * time.Second, Bin: 100 * time.Millisecond, Head: 0.05, Tail: 0.99,
			Margin: 0.1, MinCV: 0.5, MaxOOB: 0.5, MinSamples: 3, Fallback: cfg.KeepAlive}
		rec := &recorder{}
		cfg.Observer = rec
		res, err := RunFull(tr, cfg)
		if err != nil {
			continue
		}
		checkInvariants(t, fmt.Sprintf("hybrid case %d", iter), tr, cfg, res, rec)
		prewarms += res.Total.Prewarms
	}
	if prewarms == 0 {
		t.Fatal("no case pre-warmed a sandbox")
	}
}
