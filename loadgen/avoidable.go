package loadgen

import (
	"slices"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// AvoidableColdStarts counts the cold starts that an idle sandbox could have
// served. A cold start received at time R (ReceivedNs) is avoidable if
// another sandbox of the same account, function and version was idle at R:
// its previous invocation ended before R-slack, and its next one was received
// after R (or it had none).
//
// slack is the time a sandbox needs after finishing before the router can
// count on it (the "I am idle" message travelling); an idle period shorter
// than slack is not counted as avoidable.
//
// Records do not show keep-alive evictions, so a sandbox whose last
// invocation is followed by nothing is taken as idle from then on: run it on
// records of a window shorter than the keep-alive TTL, or expect an
// overcount after long quiet periods.
func AvoidableColdStarts(records []api.Record, slack time.Duration) int {
	type key struct{ account, function, version string }
	type inv struct{ recv, end int64 }
	type group struct {
		sandboxes map[string][]inv
		colds     []api.Record
	}
	groups := map[key]*group{}
	for _, r := range records {
		k := key{r.Account, r.Function, r.Version}
		g := groups[k]
		if g == nil {
			g = &group{sandboxes: map[string][]inv{}}
			groups[k] = g
		}
		end := r.EndNs
		if r.ReleasedNs > end {
			end = r.ReleasedNs // back in its pool only then
		}
		g.sandboxes[r.Sandbox] = append(g.sandboxes[r.Sandbox], inv{received(r), end})
		if r.Cold {
			g.colds = append(g.colds, r)
		}
	}

	avoidable := 0
	for _, g := range groups {
		if len(g.colds) == 0 {
			continue
		}
		// Idle intervals (from, until), open at both ends, of every sandbox:
		// from the end of an invocation (plus slack) until the next one was
		// received. At time r, the intervals covering r number
		// #(from < r) - #(until <= r), since until <= r implies from < r.
		var froms, untils []int64
		own := map[string][]span{}
		for sb, invs := range g.sandboxes {
			slices.SortFunc(invs, func(a, b inv) int { return cmp64(a.recv, b.recv) })
			for i, iv := range invs {
				sp := span{from: iv.end + int64(slack), until: int64(1<<63 - 1)}
				if i+1 < len(invs) {
					sp.until = invs[i+1].recv
				}
				if sp.from < sp.until {
					froms = append(froms, sp.from)
					untils = append(untils, sp.until)
					own[sb] = append(own[sb], sp)
				}
			}
		}
		slices.Sort(froms)
		slices.Sort(untils)
		for _, c := range g.colds {
			// Judge a cold start when it was decided (placement's grant),
			// not when the worker received it a hop later.
			r := received(c)
			if c.GrantedNs != 0 && c.GrantedNs < r {
				r = c.GrantedNs
			}
			covering := countBelow(froms, r) - countAtOrBelow(untils, r)
			// The cold start's own sandbox does not count: it was not
			// there yet (or was busy starting).
			covering -= covers(own[c.Sandbox], r)
			if covering > 0 {
				avoidable++
			}
		}
	}
	return avoidable
}

// span is one idle interval of a sandbox, open at both ends.
type span struct{ from, until int64 }

// countBelow is the number of values < x in sorted v.
func countBelow(v []int64, x int64) int {
	i, _ := slices.BinarySearch(v, x)
	return i
}

// countAtOrBelow is the number of values <= x in sorted v.
func countAtOrBelow(v []int64, x int64) int {
	if x == int64(1<<63-1) {
		return len(v)
	}
	i, _ := slices.BinarySearch(v, x+1)
	return i
}

// covers counts the spans containing x.
func covers(spans []span, x int64) int {
	n := 0
	for _, s := range spans {
		if s.from < x && x < s.until {
			n++
		}
	}
	return n
}

// received is when the worker took the request; older records without
// ReceivedNs fall back to the handler's start minus the cold start.
func received(r api.Record) int64 {
	if r.ReceivedNs != 0 {
		return r.ReceivedNs
	}
	return r.StartNs - int64(r.InitMs*float64(time.Millisecond))
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
