// Package check is coldstart's invariant checker: given the invocation
// records of a run and the limit history, it says whether the account and
// reserved concurrency limits held, whether every 429 was deserved, and
// whether any sandbox grant was applied twice. It is pure: no I/O beyond
// the readers and writers it is handed, no clock. `coldstart check` and the
// drills both call Run. DESIGN.md says what is checked and why.
package check

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
)

// DefaultWindow is how far apart two nodes' views of one moment may be: a
// cold start's grant and the release of a sandbox are stamped by different
// nodes, and a limit change reaches every node a little after it is made.
const DefaultWindow = 250 * time.Millisecond

// DefaultLimit is the account limit when nothing says otherwise (Lambda's).
const DefaultLimit = quota.DefaultAccountLimit

// Options are the limits a run was held to.
type Options struct {
	// DefaultLimit is every account's limit where Limits says nothing
	// (0: DefaultLimit).
	DefaultLimit int
	// Limits is the limit history: account limits and reservations.
	Limits []LimitChange
	// Window is the cross-node tolerance (0: DefaultWindow; negative:
	// none, every instant is taken at face value).
	Window time.Duration
	// Partial says the records are a capture of part of a run (a stream
	// joined late or left early): invocations that ended before it began,
	// or were still running when it stopped, are missing. Throttles near
	// its edges, where missing records could be what reached the limit,
	// are then not judged (Report.Unjudged counts them).
	Partial bool
	// Unsteady lists the intervals that are not steady state: a fault
	// was in force, or its effects had not settled (a paused worker's
	// capacity is counted until its lease expires). Concurrency throttles
	// inside them are not judged (Report.Unsteady counts them); the limits
	// are checked throughout.
	Unsteady []Interval
}

// Interval is [FromNs, ToNs] in Unix nanoseconds.
type Interval struct {
	FromNs int64 `json:"from_ns"`
	ToNs   int64 `json:"to_ns"`
}

func (o Options) unsteady(t int64) bool {
	for _, iv := range o.Unsteady {
		if t >= iv.FromNs && t <= iv.ToNs {
			return true
		}
	}
	return false
}

func (o Options) window() int64 {
	switch {
	case o.Window < 0:
		return 0
	case o.Window == 0:
		return int64(DefaultWindow)
	}
	return int64(o.Window)
}

func (o Options) defaultLimit() int {
	if o.DefaultLimit <= 0 {
		return DefaultLimit
	}
	return o.DefaultLimit
}

// Kinds of Violation.
const (
	KindAccountLimit   = "account-limit"   // a hold started with the account at its limit
	KindReservedLimit  = "reserved-limit"  // a hold started with the function at its reservation
	KindThrottle       = "throttle"        // a 429 while in-flight was below the limit
	KindDuplicateGrant = "duplicate-grant" // two cold starts of one sandbox
	KindSandboxOverlap = "sandbox-overlap" // two invocations at once in one sandbox
	KindFence          = "fence"           // a fenced invocation started after its lease expired
	KindInvalidRecord  = "invalid-record"  // a record the checks cannot use
)

// maxListed bounds the records a violation lists; maxDetailed bounds the
// violations per account and kind that list the records held around them
// (later ones list only their own records).
const (
	maxListed   = 20
	maxDetailed = 100
)

// Report is the verdict on a run.
type Report struct {
	Records   int   `json:"records"`
	Malformed int   `json:"malformed"` // input lines skipped (set by the decoding caller)
	BaseNs    int64 `json:"base_ns"`   // the first instant of the run; times in the table are relative to it
	EndNs     int64 `json:"end_ns"`    // the last instant of the run
	WindowNs  int64 `json:"window_ns"`
	// DecodeErrors are the first malformed lines (set by the decoding
	// caller, like Malformed).
	DecodeErrors []DecodeError `json:"decode_errors,omitempty"`
	Rows         []Row         `json:"rows"`
	Violations   []Violation   `json:"violations"`
	// ThrottleReasons counts throttled records by reason; Excused counts
	// the concurrency throttles that were excused by the window (the limit
	// was reached near them, not at their instant).
	ThrottleReasons map[string]int `json:"throttle_reasons,omitempty"`
	Excused         int            `json:"excused"`
	// Unjudged counts the concurrency throttles at the edges of a partial
	// capture, which were not judged.
	Unjudged int `json:"unjudged"`
	// UnsteadyThrottles counts the concurrency throttles inside
	// Options.Unsteady, not judged.
	UnsteadyThrottles int `json:"unsteady_throttles,omitempty"`
	// Abandoned counts the grants whose gateway gave up before anything
	// ran in them (api.OutcomeAbandoned): they held capacity, from the
	// grant to the cancel, and are counted as held like any sandbox.
	Abandoned int `json:"abandoned,omitempty"`
}

// OK reports whether the run broke no invariant.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Row is one account's line (Function empty) or one function's.
type Row struct {
	Account   string `json:"account"`
	Function  string `json:"function,omitempty"`
	Records   int    `json:"records"`
	Cold      int    `json:"cold"`
	Throttled int    `json:"throttled"`
	Fenced    int    `json:"fenced"`
	Peak      int    `json:"peak"`
	// Limits are the limits in force during the run, in order (an
	// account's limit; a function's reservation, empty when it had none).
	Limits     []int `json:"limits"`
	Violations int   `json:"violations"`
}

// Violation is one broken invariant and the records that show it.
type Violation struct {
	Kind     string `json:"kind"`
	Account  string `json:"account"`
	Function string `json:"function,omitempty"`
	AtNs     int64  `json:"at_ns"`
	Held     int    `json:"held"`  // capacity held at AtNs (limit kinds, throttle)
	Limit    int    `json:"limit"` // the limit it was held against
	Detail   string `json:"detail"`
	Records  []Ref  `json:"records"`
	// MoreRecords is how many involved records were not listed.
	MoreRecords int `json:"more_records,omitempty"`
}

// Ref names one record in a violation.
type Ref struct {
	Role      string `json:"role"` // new | held | throttled | cold | first | second | fenced | invalid
	RequestID string `json:"request_id"`
	Function  string `json:"function"`
	Worker    string `json:"worker,omitempty"`
	Sandbox   string `json:"sandbox,omitempty"`
	Cold      bool   `json:"cold,omitempty"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason,omitempty"`
	FromNs    int64  `json:"from_ns"`  // held from (a throttle: when it was answered)
	UntilNs   int64  `json:"until_ns"` // held until, at the latest
	StartNs   int64  `json:"start_ns,omitempty"`
	EndNs     int64  `json:"end_ns,omitempty"`
}

// HeldFrom is when a record's sandbox started being held for it: the grant
// of a cold start, or the worker's receipt of a warm request.
func HeldFrom(r api.Record) int64 {
	if r.GrantedNs != 0 && r.GrantedNs < r.ReceivedNs {
		return r.GrantedNs
	}
	return r.ReceivedNs
}

// HeldUntil is when a record's sandbox went back to its pool, at the latest:
// its release, or the end of the handler when no release was recorded. A
// fenced record is counted until its EndNs, the lease's expiry.
func HeldUntil(r api.Record) int64 {
	if r.Outcome != api.OutcomeFenced && r.ReleasedNs > r.EndNs {
		return r.ReleasedNs
	}
	return r.EndNs
}

// certainlyUntil is when a record's sandbox was still held for it for sure:
// the end of the handler (the release that follows is stamped after the
// sandbox is already back in its pool).
func certainlyUntil(r api.Record) int64 { return r.EndNs }

// holds reports whether a record held capacity at all.
func holds(r api.Record) bool { return r.Outcome != api.OutcomeThrottled }

// MaxInFlight is the sweep-line maximum of capacity held at once by the
// records that match keep (nil: all), each from HeldFrom to the end of its
// handler. Records of one sandbox count once while they overlap (a
// sandbox is one unit of capacity); throttled records hold nothing.
func MaxInFlight(recs []api.Record, keep func(api.Record) bool) int {
	var idx []int
	for i, r := range recs {
		if holds(r) && (keep == nil || keep(r)) {
			idx = append(idx, i)
		}
	}
	peak := 0
	sweep(mergeHolds(recs, idx, certainlyUntil), func(_ int, _ *hold, active []int) {
		peak = max(peak, len(active)+1)
	}, nil)
	return peak
}

// hold is capacity held without a break: one sandbox's records, merged
// where they overlap.
type hold struct {
	from, until int64
	fn          string
	recs        []int // indexes into the records, by HeldFrom
}

// mergeHolds groups the records idx by sandbox (a record without one is
// its own) and merges the overlapping ones, each held from HeldFrom to
// until(r). The holds come out ordered by start.
func mergeHolds(recs []api.Record, idx []int, until func(api.Record) int64) []hold {
	type key struct{ fn, sandbox string }
	groups := map[key][]int{}
	var order []key
	var out []hold
	for _, i := range idx {
		r := recs[i]
		if r.Sandbox == "" {
			out = append(out, hold{from: HeldFrom(r), until: max(HeldFrom(r), until(r)), fn: r.Function, recs: []int{i}})
			continue
		}
		k := key{r.Function, r.Sandbox}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		g := groups[k]
		slices.SortFunc(g, func(a, b int) int {
			return cmp.Or(cmp.Compare(HeldFrom(recs[a]), HeldFrom(recs[b])), cmp.Compare(a, b))
		})
		var cur *hold
		for _, i := range g {
			r := recs[i]
			from, to := HeldFrom(r), max(HeldFrom(r), until(r))
			if cur != nil && from <= cur.until {
				cur.until = max(cur.until, to)
				cur.recs = append(cur.recs, i)
				continue
			}
			if cur != nil {
				out = append(out, *cur)
			}
			cur = &hold{from: from, until: to, fn: k.fn, recs: []int{i}}
		}
		if cur != nil {
			out = append(out, *cur)
		}
	}
	slices.SortFunc(out, func(a, b hold) int { return cmp.Or(cmp.Compare(a.from, b.from), cmp.Compare(a.recs[0], b.recs[0])) })
	return out
}

// sweep walks the holds in time order and calls start at the start of
// each, with the holds active just before it, and end (if not nil) at its
// end. At one instant, holds that
// end there end before others start (a sandbox given back and another
// granted at the same nanosecond were not held together); a hold of no
// length is active for the starts at its own instant.
func sweep(hs []hold, start func(h int, _ *hold, active []int), end func(h int)) {
	type ev struct {
		t    int64
		kind int // 0 end, 1 start, 2 end of a hold of no length
		h    int
	}
	evs := make([]ev, 0, 2*len(hs))
	for i, h := range hs {
		end := 0
		if h.until == h.from {
			end = 2
		}
		evs = append(evs, ev{h.from, 1, i}, ev{h.until, end, i})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.kind, b.kind), cmp.Compare(a.h, b.h))
	})
	var active []int
	pos := make([]int, len(hs))
	for _, e := range evs {
		if e.kind == 1 {
			start(e.h, &hs[e.h], active)
			pos[e.h] = len(active)
			active = append(active, e.h)
			continue
		}
		if end != nil {
			end(e.h)
		}
		p := pos[e.h]
		last := active[len(active)-1]
		active[p] = last
		pos[last] = p
		active = active[:len(active)-1]
	}
}

// Run checks the records against the limits and returns the verdict.
func Run(recs []api.Record, o Options) Report {
	w := o.window()
	rep := Report{WindowNs: w, ThrottleReasons: map[string]int{}}
	byAccount := map[string][]int{}
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	for i, r := range recs {
		if err := Validate(r); err != nil {
			rep.Violations = append(rep.Violations, Violation{
				Kind: KindInvalidRecord, Account: r.Account, Function: r.Function, AtNs: r.ReceivedNs,
				Detail: err.Error(), Records: []Ref{ref("invalid", r)},
			})
			continue
		}
		rep.Records++
		byAccount[r.Account] = append(byAccount[r.Account], i)
		first = min(first, HeldFrom(r))
		last = max(last, r.ReceivedNs, HeldUntil(r))
	}
	if rep.Records == 0 {
		first, last = 0, 0
	}
	rep.BaseNs, rep.EndNs = first, last
	judge := [2]int64{math.MinInt64, math.MaxInt64}
	if o.Partial && rep.Records > 0 {
		judge = judgeable(recs, w)
	}
	accounts := make([]string, 0, len(byAccount))
	for a := range byAccount {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	for _, a := range accounts {
		c := &accountCheck{recs: recs, idx: byAccount[a], account: a, w: w, rep: &rep, judge: judge, opt: o,
			lim: buildLimits(a, o.defaultLimit(), o.Limits)}
		c.run()
	}
	sort.SliceStable(rep.Violations, func(i, j int) bool {
		a, b := rep.Violations[i], rep.Violations[j]
		if a.Account != b.Account {
			return a.Account < b.Account
		}
		return a.AtNs < b.AtNs
	})
	if len(rep.ThrottleReasons) == 0 {
		rep.ThrottleReasons = nil
	}
	for i := range rep.Rows {
		row := &rep.Rows[i]
		for _, v := range rep.Violations {
			if v.Account == row.Account && v.Function == row.Function {
				row.Violations++
			}
		}
	}
	return rep
}

// judgeable is the span of a partial capture in which a throttle can be
// judged: the capture began about when its first record was published (a
// record is published when its sandbox is released; a throttle when it is
// answered), so holds that ended before that are missing; and it stopped at
// its last, so holds still running then are missing. A throttle at t is
// judged if its window starts after the first, and every hold that can
// reach into its window (none lasts longer than the longest seen) ended
// before the last.
func judgeable(recs []api.Record, w int64) [2]int64 {
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	longest := int64(0)
	for _, r := range recs {
		if Validate(r) != nil {
			continue
		}
		pub := r.ReceivedNs
		if holds(r) {
			pub = HeldUntil(r)
			longest = max(longest, HeldUntil(r)-HeldFrom(r))
		}
		first, last = min(first, pub), max(last, pub)
	}
	return [2]int64{first + w, last - longest - w}
}

// accountCheck runs every check on one account's records.
type accountCheck struct {
	recs    []api.Record
	idx     []int
	account string
	w       int64
	judge   [2]int64 // throttles are judged in this span
	opt     Options
	lim     *limits
	rep     *Report
	// detailed counts the violations per kind that listed held records.
	detailed map[string]int
}

func (c *accountCheck) run() {
	c.detailed = map[string]int{}
	rows := map[string]*Row{}
	acct := &Row{Account: c.account}
	var held, throttled []int
	for _, i := range c.idx {
		r := c.recs[i]
		fr := rows[r.Function]
		if fr == nil {
			fr = &Row{Account: c.account, Function: r.Function}
			rows[r.Function] = fr
		}
		for _, row := range []*Row{acct, fr} {
			row.Records++
			switch {
			case r.Outcome == api.OutcomeThrottled:
				row.Throttled++
			case r.Outcome == api.OutcomeFenced:
				row.Fenced++
			}
			if r.Cold && holds(r) {
				row.Cold++
			}
		}
		if r.Outcome == api.OutcomeAbandoned {
			c.rep.Abandoned++
		}
		if holds(r) {
			held = append(held, i)
		} else {
			throttled = append(throttled, i)
		}
	}
	c.limitChecks(held, acct, rows)
	c.throttleChecks(held, throttled)
	c.sandboxChecks(held)

	acct.Limits = c.lim.account.values(c.rep.BaseNs, c.rep.EndNs)
	c.rep.Rows = append(c.rep.Rows, *acct)
	fns := make([]string, 0, len(rows))
	for f := range rows {
		fns = append(fns, f)
	}
	sort.Strings(fns)
	for _, f := range fns {
		row := rows[f]
		if tl := c.lim.fn(f); tl != nil {
			row.Limits = tl.values(c.rep.BaseNs, c.rep.EndNs)
		}
		c.rep.Rows = append(c.rep.Rows, *row)
	}
}

// limitChecks: no hold may start while the account (or its function) holds
// as much as its limit (reservation) allows. The limit a start is held to
// is the highest in force during the window before it, so that a lowered
// limit takes full effect a window after it is made, and holds begun
// before it may run to their end.
func (c *accountCheck) limitChecks(held []int, acct *Row, rows map[string]*Row) {
	hs := mergeHolds(c.recs, held, certainlyUntil)
	perFn := map[string]int{}
	sweep(hs, func(hi int, h *hold, active []int) {
		t := h.from
		n := len(active)
		if lim := c.lim.account.highest(t-c.w, t); n >= lim {
			c.violation(KindAccountLimit, "", t, n, lim, hs, hi, active,
				"a sandbox was taken while the account held its whole limit")
		}
		fnHeld := perFn[h.fn]
		if tl := c.lim.fn(h.fn); tl != nil {
			if lim := tl.highest(t-c.w, t); lim != none && fnHeld >= lim {
				var mine []int
				for _, a := range active {
					if hs[a].fn == h.fn {
						mine = append(mine, a)
					}
				}
				c.violation(KindReservedLimit, h.fn, t, fnHeld, lim, hs, hi, mine,
					"a sandbox was taken while the function held its whole reservation")
			}
		}
		perFn[h.fn] = fnHeld + 1
		acct.Peak = max(acct.Peak, n+1)
		rows[h.fn].Peak = max(rows[h.fn].Peak, fnHeld+1)
	}, func(hi int) { perFn[hs[hi].fn]-- })
}

// violation records a limit violation by the hold hs[hi], started at t
// while the holds active were held.
func (c *accountCheck) violation(kind, fn string, t int64, n, lim int, hs []hold, hi int, active []int, detail string) {
	h := hs[hi]
	v := Violation{Kind: kind, Account: c.account, Function: fn, AtNs: t, Held: n, Limit: lim, Detail: detail}
	v.Records = append(v.Records, ref("new", c.recs[h.recs[0]]))
	if c.detailed[kind] < maxDetailed {
		c.detailed[kind]++
		sorted := append([]int(nil), active...)
		sort.Slice(sorted, func(a, b int) bool { return hs[sorted[a]].from < hs[sorted[b]].from })
		for _, a := range sorted {
			if len(v.Records) > maxListed {
				v.MoreRecords++
				continue
			}
			v.Records = append(v.Records, ref("held", c.recs[c.coveringAt(hs[a], t)]))
		}
	} else {
		v.MoreRecords = len(active)
	}
	c.rep.Violations = append(c.rep.Violations, v)
}

// coveringAt is the record of a hold that was running at t.
func (c *accountCheck) coveringAt(h hold, t int64) int {
	best := h.recs[0]
	for _, i := range h.recs {
		if HeldFrom(c.recs[i]) <= t {
			best = i
		}
	}
	return best
}

func ref(role string, r api.Record) Ref {
	from, until := HeldFrom(r), HeldUntil(r)
	if r.Outcome == api.OutcomeThrottled {
		from, until = r.ReceivedNs, r.ReceivedNs
	}
	return Ref{Role: role, RequestID: r.RequestID, Function: r.Function, Worker: r.Worker, Sandbox: r.Sandbox,
		Cold: r.Cold, Outcome: r.Outcome, Reason: r.Reason, FromNs: from, UntilNs: until, StartNs: r.StartNs, EndNs: r.EndNs}
}
