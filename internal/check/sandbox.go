package check

import (
	"cmp"
	"fmt"
	"slices"
	"sort"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// sandboxChecks: a sandbox is created by one grant (one cold record) and
// runs one invocation at a time (its handler runs, StartNs to EndNs, never
// overlap); a fenced invocation was running when its lease expired, so it
// started before EndNs.
func (c *accountCheck) sandboxChecks(held []int) {
	bySandbox := map[string][]int{}
	var order []string
	for _, i := range held {
		r := c.recs[i]
		if r.Outcome == api.OutcomeFenced && r.StartNs > r.EndNs {
			c.rep.Violations = append(c.rep.Violations, Violation{
				Kind: KindFence, Account: c.account, Function: r.Function, AtNs: r.StartNs,
				Detail:  fmt.Sprintf("a fenced invocation started %s after its worker's lease expired", dur(r.StartNs-r.EndNs)),
				Records: []Ref{ref("fenced", r)},
			})
		}
		if r.Sandbox == "" {
			continue
		}
		if _, ok := bySandbox[r.Sandbox]; !ok {
			order = append(order, r.Sandbox)
		}
		bySandbox[r.Sandbox] = append(bySandbox[r.Sandbox], i)
	}
	for _, sb := range order {
		g := bySandbox[sb]
		var colds []int
		for _, i := range g {
			if c.recs[i].Cold {
				colds = append(colds, i)
			}
		}
		if len(colds) > 1 {
			sort.SliceStable(colds, func(a, b int) bool { return HeldFrom(c.recs[colds[a]]) < HeldFrom(c.recs[colds[b]]) })
			second := c.recs[colds[1]]
			v := Violation{Kind: KindDuplicateGrant, Account: c.account, Function: second.Function, AtNs: HeldFrom(second),
				Detail: fmt.Sprintf("sandbox %s was cold-started %d times: one grant applied more than once", sb, len(colds))}
			for _, i := range colds {
				if len(v.Records) >= maxListed {
					v.MoreRecords++
					continue
				}
				v.Records = append(v.Records, ref("cold", c.recs[i]))
			}
			c.rep.Violations = append(c.rep.Violations, v)
		}
		run := func(r api.Record) (int64, int64) { return r.StartNs, max(r.StartNs, r.EndNs) }
		slices.SortFunc(g, func(a, b int) int {
			as, ae := run(c.recs[a])
			bs, be := run(c.recs[b])
			return cmp.Or(cmp.Compare(as, bs), cmp.Compare(ae, be), cmp.Compare(a, b))
		})
		latest := -1 // the record that ends last so far
		for _, i := range g {
			s, e := run(c.recs[i])
			if latest >= 0 {
				_, le := run(c.recs[latest])
				if s < le {
					r := c.recs[i]
					c.rep.Violations = append(c.rep.Violations, Violation{
						Kind: KindSandboxOverlap, Account: c.account, Function: r.Function, AtNs: s,
						Detail:  fmt.Sprintf("sandbox %s ran two invocations at once for %s", sb, dur(min(le, e)-s)),
						Records: []Ref{ref("first", c.recs[latest]), ref("second", r)},
					})
				}
				if e <= le {
					continue
				}
			}
			latest = i
		}
	}
}
