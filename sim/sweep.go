package sim

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Sweep parameters.
const (
	SweepProvisioned = "provisioned"
	SweepKeepAlive   = "keep-alive"
	SweepRate        = "rate"
	SweepPeak        = "peak"
	SweepMemory      = "memory"
	SweepLimit       = "account-limit"
)

var sweepParams = []string{SweepProvisioned, SweepKeepAlive, SweepRate, SweepPeak, SweepMemory, SweepLimit}

// Sweep is `--sweep name=from:to:step`.
type Sweep struct {
	Param  string
	Values []float64 // seconds for keep-alive
}

// ParseSweep reads "provisioned=0:100:10" or "keep-alive=60s:1200s:60s".
func ParseSweep(s string) (Sweep, error) {
	bad := func(msg string) (Sweep, error) {
		return Sweep{}, fmt.Errorf("%w: --sweep %q: %s", ErrBadSpec, s, msg)
	}
	name, rng, ok := strings.Cut(s, "=")
	if !ok || indexOf(sweepParams, name) < 0 {
		return bad("want NAME=FROM:TO:STEP with NAME one of " + strings.Join(sweepParams, "|"))
	}
	parts := strings.Split(rng, ":")
	if len(parts) != 3 {
		return bad("want FROM:TO:STEP")
	}
	var v [3]float64
	for i, p := range parts {
		var err error
		if name == SweepKeepAlive {
			var d time.Duration
			d, err = time.ParseDuration(p)
			v[i] = d.Seconds()
		} else {
			v[i], err = strconv.ParseFloat(p, 64)
		}
		if err != nil || v[i] < 0 || math.IsInf(v[i], 0) || math.IsNaN(v[i]) {
			return bad(fmt.Sprintf("%q is not a non-negative number", p))
		}
	}
	if !(v[2] > 0) || v[1] < v[0] || (v[1]-v[0])/v[2] > 1000 {
		return bad("need FROM <= TO, STEP > 0 and at most 1000 steps")
	}
	sw := Sweep{Param: name}
	for i := 0; ; i++ {
		x := v[0] + float64(i)*v[2]
		if x > v[1]+v[2]*1e-9 {
			break
		}
		sw.Values = append(sw.Values, x)
	}
	return sw, nil
}

// SweepRow is one value's outcome; Base is the same run without provisioned
// concurrency when the sweep answers the seed's exercise.
type SweepRow struct {
	Value float64
	Res   *Result
	Base  *Result
}

func (s Sweep) label(v float64) string {
	if s.Param == SweepKeepAlive {
		return time.Duration(v * float64(time.Second)).String()
	}
	return num(v)
}

// WriteSweep prints a sweep's table.
func WriteSweep(w io.Writer, s Sweep, rows []SweepRow) {
	if len(rows) > 0 && rows[0].Base != nil {
		writeExercise(w, s, rows)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\trequests\tcold\tcold %%\tthrottles\tp50 ms\tp99 ms\tpeak conc\tidle GB-s\tcompute\tprovisioned\ttotal cost\t\n", s.Param)
	for _, r := range rows {
		t := &r.Res.Total
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", s.label(r.Value), t.Invocations, t.Cold,
			pct(t.Cold, t.Invocations), t.Throttles, num(t.P50Ms), num(t.P99Ms), t.PeakConcurrency, num(t.IdleGBs),
			usd(t.Cost.Compute), usd(t.Cost.PCHeld+t.Cost.PCRun), usd(t.Cost.Total))
	}
	tw.Flush()
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// writeExercise answers the seed's exercise: for each spike size, what
// provisioned concurrency costs against the cold starts it removes.
func writeExercise(w io.Writer, s Sweep, rows []SweepRow) {
	pc := rows[0].Res.Total.Provisioned
	fmt.Fprintf(w, "provisioned concurrency %d vs none, per %s (the seed's exercise)\n", pc, s.Param)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\trequests\tcold PC=0\tcold PC=%d\tremoved\tcold-start s removed\tp99 PC=0\tp99 PC=%d\tcost PC=0\tcost PC=%d\tPC extra cost\tper removed cold start\t\n", s.Param, pc, pc, pc)
	var costly, pays []string
	for _, r := range rows {
		b, p := &r.Base.Total, &r.Res.Total
		removed := b.Cold - p.Cold
		removedS := (b.BilledMs - p.BilledMs) / 1000 // cold-start time no longer waited for (and billed)
		extra := p.Cost.Total - b.Cost.Total
		per := "-"
		if removed > 0 {
			per = usd(extra / float64(removed))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.label(r.Value), p.Invocations, b.Cold, p.Cold,
			removed, removedS, num(b.P99Ms), num(p.P99Ms), usd(b.Cost.Total), usd(p.Cost.Total), usd(extra), per)
		if extra > 0 {
			costly = append(costly, s.label(r.Value))
		} else {
			pays = append(pays, s.label(r.Value))
		}
	}
	tw.Flush()
	switch {
	case len(pays) == 0:
		fmt.Fprintf(w, "answer: provisioned concurrency %d costs more than the cold starts it removes at every %s swept; the last column is the price paid per cold start avoided\n", pc, s.Param)
	case len(costly) == 0:
		fmt.Fprintf(w, "answer: provisioned concurrency %d pays for itself at every %s swept (its running price is lower than on-demand)\n", pc, s.Param)
	default:
		fmt.Fprintf(w, "answer: provisioned concurrency %d costs more than the cold starts it removes at %s %s, and pays for itself at %s\n", pc, s.Param, strings.Join(costly, ", "), strings.Join(pays, ", "))
	}
}
