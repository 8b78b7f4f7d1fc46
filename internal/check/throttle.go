package check

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// throttleChecks: a 429 for concurrency must come with the limit reached.
// Each one is held against the capacity that may have been held around
// it (records from HeldFrom to HeldUntil, the generous bounds), and is
// excused if that reached the limit in force at some instant of the window
// around it. Rate-limit throttles are not about concurrency and pass.
func (c *accountCheck) throttleChecks(held, throttled []int) {
	if len(throttled) == 0 {
		return
	}
	slices.SortFunc(throttled, func(a, b int) int {
		return cmp.Or(cmp.Compare(c.recs[a].ReceivedNs, c.recs[b].ReceivedNs), cmp.Compare(a, b))
	})
	hs := mergeHolds(c.recs, held, HeldUntil)
	changes := c.lim.changeTimes()
	unreserved := func(fn string, t int64) bool {
		tl := c.lim.fn(fn)
		return tl == nil || tl.valueAt(t) == none
	}
	var acct, unres *cursor
	fns := map[string]*cursor{}
	for _, i := range throttled {
		r := c.recs[i]
		c.rep.ThrottleReasons[r.Reason]++
		t := r.ReceivedNs
		lo, hi := t-c.w, t+c.w
		switch quota.Reason(r.Reason) {
		case quota.ReasonAccountConcurrency, quota.ReasonReservedConcurrency:
			if t < c.judge[0] || t > c.judge[1] {
				c.rep.Unjudged++
				continue
			}
			if c.opt.unsteady(t) {
				c.rep.UnsteadyThrottles++
				continue
			}
		}
		switch quota.Reason(r.Reason) {
		case quota.ReasonAccountConcurrency:
			if acct == nil {
				acct = newCursor(buildSteps(hs, nil, c.lim.account.at, c.lim.account.valueAt))
				unres = newCursor(buildSteps(hs, func(h *hold) bool { return unreserved(h.fn, h.from) }, changes, c.lim.unreservedCap))
			}
			okAcct := acct.max(lo, hi) >= 0
			okUnres := unres.max(lo, hi) >= 0 && unreserved(r.Function, t)
			if okAcct {
				c.excuse(acct.s, t)
				continue
			}
			if okUnres {
				c.excuse(unres.s, t)
				continue
			}
			n, lim := acct.s.stateAt(t)
			detail := fmt.Sprintf("429 %s while the account held %d of its limit %d", r.Reason, n, lim)
			if len(c.lim.reserved) > 0 && unreserved(r.Function, t) {
				un, ul := unres.s.stateAt(t)
				detail += fmt.Sprintf(" (unreserved functions %d of %d)", un, ul)
			}
			c.throttleViolation(i, "", n, lim, hs, detail)
		case quota.ReasonReservedConcurrency:
			tl := c.lim.fn(r.Function)
			if tl == nil {
				c.throttleViolation(i, r.Function, 0, 0, hs, fmt.Sprintf(
					"429 %s but no reservation of %s is known (give it with --reserved or --limits)", r.Reason, r.Function))
				continue
			}
			cur := fns[r.Function]
			if cur == nil {
				fn := r.Function
				cur = newCursor(buildSteps(hs, func(h *hold) bool { return h.fn == fn }, tl.at, tl.valueAt))
				fns[r.Function] = cur
			}
			if cur.max(lo, hi) >= 0 {
				c.excuse(cur.s, t)
				continue
			}
			n, lim := cur.s.stateAt(t)
			detail := fmt.Sprintf("429 %s while the function held %d of its reservation %d", r.Reason, n, lim)
			if lim == none {
				detail = fmt.Sprintf("429 %s while the function had no reservation (%d held)", r.Reason, n)
				lim = 0
			}
			c.throttleViolation(i, r.Function, n, lim, hs, detail)
		}
	}
}

// excuse counts a throttle passed only thanks to the window.
func (c *accountCheck) excuse(s *steps, t int64) {
	if n, lim := s.stateAt(t); lim == none || n < lim {
		c.rep.Excused++
	}
}

func (c *accountCheck) throttleViolation(i int, fn string, n, lim int, hs []hold, detail string) {
	r := c.recs[i]
	t := r.ReceivedNs
	v := Violation{Kind: KindThrottle, Account: c.account, Function: fn, AtNs: t, Held: n, Limit: lim,
		Detail: detail + fmt.Sprintf(", nor reached it within %s", time.Duration(c.w))}
	v.Records = append(v.Records, ref("throttled", r))
	if c.detailed[KindThrottle] < maxDetailed {
		c.detailed[KindThrottle]++
		for _, h := range hs {
			if h.from > t || h.until < t || (fn != "" && h.fn != fn) {
				continue
			}
			if len(v.Records) > maxListed {
				v.MoreRecords++
				continue
			}
			v.Records = append(v.Records, ref("held", c.recs[c.coveringAt(h, t)]))
		}
	}
	c.rep.Violations = append(c.rep.Violations, v)
}

// steps is capacity held against a limit over time: from at[i] on (until
// at[i+1]), held[i] were held and the limit was lim[i]. Two entries may
// share an instant (the state between the starts and the ends there).
type steps struct {
	at   []int64
	held []int
	lim  []int
}

// buildSteps counts the holds that match keep (nil: all) against the limit
// limitAt, which changes only at the instants changes.
func buildSteps(hs []hold, keep func(*hold) bool, changes []int64, limitAt func(int64) int) *steps {
	type ev struct {
		t int64
		d int
	}
	evs := make([]ev, 0, 2*len(hs)+len(changes))
	for i := range hs {
		if keep == nil || keep(&hs[i]) {
			evs = append(evs, ev{hs[i].from, 1}, ev{hs[i].until, -1})
		}
	}
	for _, t := range changes {
		evs = append(evs, ev{t, 0})
	}
	slices.SortFunc(evs, func(a, b ev) int { return cmp.Compare(a.t, b.t) })
	s := &steps{}
	emit := func(t int64, n int) {
		s.at = append(s.at, t)
		s.held = append(s.held, n)
		s.lim = append(s.lim, limitAt(t))
	}
	emit(math.MinInt64, 0)
	n := 0
	for i := 0; i < len(evs); {
		t := evs[i].t
		starts, ends := 0, 0
		for ; i < len(evs) && evs[i].t == t; i++ {
			switch evs[i].d {
			case 1:
				starts++
			case -1:
				ends++
			}
		}
		// Starts first: where one sandbox is given back as another is
		// taken, both may have been held at once.
		n += starts
		emit(t, n)
		if ends > 0 {
			n -= ends
			emit(t, n)
		}
	}
	return s
}

// value is how far the held capacity of entry i was past its limit
// (>= 0: the limit was reached).
func (s *steps) value(i int) int64 {
	if s.lim[i] == none {
		return math.MinInt64 / 2
	}
	return int64(s.held[i]) - int64(s.lim[i])
}

// stateAt returns what was held at t, and the limit.
func (s *steps) stateAt(t int64) (int, int) {
	i := sort.Search(len(s.at), func(i int) bool { return s.at[i] > t }) - 1
	return s.held[i], s.lim[i]
}

// cursor answers "the highest value over [lo, hi]" for windows that only
// move forward: a sliding-window maximum over the steps.
type cursor struct {
	s    *steps
	next int
	dq   []int // entries in the window, values decreasing
}

func newCursor(s *steps) *cursor { return &cursor{s: s} }

func (c *cursor) max(lo, hi int64) int64 {
	s := c.s
	for ; c.next < len(s.at) && s.at[c.next] <= hi; c.next++ {
		for len(c.dq) > 0 && s.value(c.dq[len(c.dq)-1]) <= s.value(c.next) {
			c.dq = c.dq[:len(c.dq)-1]
		}
		c.dq = append(c.dq, c.next)
	}
	// An entry leaves the window once it ended before lo; entries end in
	// order, so only the front can have.
	for len(c.dq) > 0 {
		i := c.dq[0]
		end := int64(math.MaxInt64)
		if i+1 < len(s.at) {
			end = s.at[i+1]
		}
		if end > lo || s.at[i] >= lo {
			break
		}
		c.dq = c.dq[1:]
	}
	if len(c.dq) == 0 {
		return math.MinInt64
	}
	return s.value(c.dq[0])
}
