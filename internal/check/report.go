package check

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// maxShown bounds the violations WriteTable details; WriteJSON has them all.
const maxShown = 50

// WriteTable prints the verdict table (one row per account, marked "*",
// then one per function), a PASS or FAIL line, and each violation with the
// records involved; times are relative to the first instant of the run.
func (r Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tFUNCTION\tRECORDS\tCOLD\tTHROTTLED\tFENCED\tPEAK\tLIMIT\tVERDICT")
	for _, row := range r.Rows {
		fn := row.Function
		if fn == "" {
			fn = "*"
		}
		verdict := "ok"
		if row.Violations > 0 {
			verdict = fmt.Sprintf("FAIL (%d)", row.Violations)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", row.Account, fn, row.Records, row.Cold,
			row.Throttled, row.Fenced, row.Peak, limitsText(row.Limits), verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)

	var notes []string
	if r.Malformed > 0 {
		notes = append(notes, fmt.Sprintf("%d malformed lines skipped", r.Malformed))
	}
	if len(r.ThrottleReasons) > 0 {
		reasons := make([]string, 0, len(r.ThrottleReasons))
		for k, n := range r.ThrottleReasons {
			if k == "" {
				k = "no reason"
			}
			reasons = append(reasons, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(reasons)
		notes = append(notes, "throttles: "+strings.Join(reasons, ", "))
	}
	if r.Abandoned > 0 {
		notes = append(notes, fmt.Sprintf("%d abandoned grants counted as held until their cancel", r.Abandoned))
	}
	if r.UnsteadyThrottles > 0 {
		notes = append(notes, fmt.Sprintf("%d throttles during faults not judged", r.UnsteadyThrottles))
	}
	if r.Unjudged > 0 {
		notes = append(notes, fmt.Sprintf("%d throttles at the edges of the capture not judged", r.Unjudged))
	}
	if r.Excused > 0 {
		notes = append(notes, fmt.Sprintf("%d throttles excused by the window", r.Excused))
	}
	span := time.Duration(r.EndNs - r.BaseNs).Round(time.Millisecond)
	summary := fmt.Sprintf("%d records over %s, window %s", r.Records, span, time.Duration(r.WindowNs))
	if len(notes) > 0 {
		summary += "; " + strings.Join(notes, "; ")
	}
	if r.OK() {
		fmt.Fprintf(w, "PASS: %s\n", summary)
		return
	}
	kinds := map[string]int{}
	for _, v := range r.Violations {
		kinds[v.Kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(ks)
	fmt.Fprintf(w, "FAIL: %d violations (%s); %s\n", len(r.Violations), strings.Join(ks, ", "), summary)
	for i, v := range r.Violations {
		if i == maxShown {
			fmt.Fprintf(w, "\n... and %d more violations (see --json)\n", len(r.Violations)-maxShown)
			break
		}
		r.writeViolation(w, i+1, v)
	}
}

func (r Report) writeViolation(w io.Writer, n int, v Violation) {
	where := "account " + v.Account
	if v.Function != "" {
		where += " function " + v.Function
	}
	fmt.Fprintf(w, "\n%d. %s  %s  at %s", n, v.Kind, where, r.rel(v.AtNs))
	switch v.Kind {
	case KindAccountLimit, KindReservedLimit, KindThrottle:
		fmt.Fprintf(w, "  held %d, limit %d", v.Held, v.Limit)
	}
	fmt.Fprintf(w, "\n   %s\n", v.Detail)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   ROLE\tREQUEST_ID\tFUNCTION\tFROM\tUNTIL\tWORKER\tSANDBOX\tCOLD\tOUTCOME")
	for _, x := range v.Records {
		cold := "-"
		if x.Cold {
			cold = "cold"
		}
		outcome := x.Outcome
		if x.Reason != "" {
			outcome += " " + x.Reason
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Role, dash(x.RequestID), dash(x.Function),
			r.rel(x.FromNs), r.rel(x.UntilNs), dash(x.Worker), dash(x.Sandbox), cold, dash(outcome))
	}
	tw.Flush()
	if v.MoreRecords > 0 {
		fmt.Fprintf(w, "   ... and %d more records\n", v.MoreRecords)
	}
}

// WriteJSON prints the report as one indented JSON document.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	out := struct {
		OK bool `json:"ok"`
		Report
	}{r.OK(), r}
	if out.Rows == nil {
		out.Rows = []Row{}
	}
	if out.Violations == nil {
		out.Violations = []Violation{}
	}
	return enc.Encode(out)
}

// rel is an instant relative to the start of the run, in milliseconds.
func (r Report) rel(ns int64) string {
	return fmt.Sprintf("%+.3fms", float64(ns-r.BaseNs)/1e6)
}

func limitsText(ls []int) string {
	if len(ls) == 0 {
		return "-"
	}
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = strconv.Itoa(l)
	}
	return strings.Join(s, "->")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dur(ns int64) string {
	d := time.Duration(ns)
	if d > time.Millisecond {
		d = d.Round(time.Microsecond)
	}
	return d.String()
}
