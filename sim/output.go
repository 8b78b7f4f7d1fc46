package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// SeedJSON is `--model seed --json`: the seed's result dict plus its cost
// (billed GB-s times the price, without the seed's stray x1000).
type SeedJSON struct {
	Invocations int64   `json:"invocations"`
	ColdStarts  int64   `json:"cold_starts"`
	WarmStarts  int64   `json:"warm_starts"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	BilledMs    float64 `json:"billed_ms"`
	CostUSD     float64 `json:"cost_usd"`
}

func seedJSON(res *Result) SeedJSON {
	t := res.Total
	return SeedJSON{t.Invocations, t.Cold, t.Warm, t.P50Ms, t.P99Ms, t.BilledMs, t.Cost.Total}
}

// WriteJSON writes one JSON object: SeedJSON for the seed model, the whole
// Result otherwise.
func WriteJSON(w io.Writer, res *Result) error {
	enc := json.NewEncoder(w)
	if res.Model == "seed" {
		return enc.Encode(seedJSON(res))
	}
	return enc.Encode(res)
}

// num prints integral values without decimals (billed ms of integral
// durations stay exact) and others with two.
func num(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

func usd(x float64) string {
	if x < 0 {
		return "-$" + strconv.FormatFloat(-x, 'f', 6, 64)
	}
	return "$" + strconv.FormatFloat(x, 'f', 6, 64)
}

// WriteTable prints the per-function table (the top functions by requests,
// then the total) and the cost lines.
func WriteTable(w io.Writer, res *Result, top int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "function\tinvocations\tcold\twarm\tthrottles\tp50 ms\tp99 ms\tpeak conc\tbilled ms\tGB-s\tcost\t")
	fns := res.Functions
	if top > 0 && len(fns) > top {
		fns = append([]FunctionResult(nil), fns...)
		sort.SliceStable(fns, func(i, j int) bool { return fns[i].Invocations > fns[j].Invocations })
		fns = fns[:top]
	}
	for i := range fns {
		row(tw, &fns[i])
	}
	if len(res.Functions) > 1 {
		if len(fns) < len(res.Functions) {
			fmt.Fprintf(tw, "(%d more)\t\t\t\t\t\t\t\t\t\t\t\n", len(res.Functions)-len(fns))
		}
		row(tw, &res.Total)
	}
	tw.Flush()
	writeNotes(w, res)
}

func row(w io.Writer, f *FunctionResult) {
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t\n", shortName(f.Name), f.Invocations, f.Cold, f.Warm,
		f.Throttles, num(f.P50Ms), num(f.P99Ms), f.PeakConcurrency, num(f.BilledMs), num(f.GBs), usd(f.Cost.Total))
}

// shortName keeps Azure's 64-hex-digit hashes readable.
func shortName(s string) string {
	if len(s) > 24 {
		return s[:21] + "..."
	}
	return s
}

func writeNotes(w io.Writer, res *Result) {
	t, c := &res.Total, res.Total.Cost
	if t.Invocations > 0 {
		fmt.Fprintf(w, "cold-start rate %.2f%% of %d requests", 100*float64(t.Cold)/float64(t.Invocations), t.Invocations)
		if t.Throttles > 0 {
			fmt.Fprintf(w, "; throttled %d (%s)", t.Throttles, reasons(t))
		}
		fmt.Fprintln(w)
	}
	if res.Model == "seed" {
		fmt.Fprintf(w, "cost %s for %s GB-s (duration only, as the seed bills)\n", usd(c.Total), num(t.GBs))
	} else {
		fmt.Fprintf(w, "cost %s = compute %s + requests %s + provisioned held %s + provisioned running %s\n",
			usd(c.Total), usd(c.Compute), usd(c.Requests), usd(c.PCHeld), usd(c.PCRun))
	}
	if t.Provisioned > 0 {
		fmt.Fprintf(w, "provisioned concurrency %d over %.0f s served %d requests\n", t.Provisioned, res.HorizonS, t.ProvisionedHits)
	}
	fmt.Fprintf(w, "keep-alive holds %s GB-s idle (memory-time the platform pays for, not billed)\n", num(t.IdleGBs))
	if k := res.KeepAlive; k != nil && k.Histogram+k.Fallback > 0 {
		fmt.Fprintf(w, "hybrid keep-alive: %.1f%% of releases used histogram windows, %d pre-warms\n",
			100*float64(k.Histogram)/float64(k.Histogram+k.Fallback), t.Prewarms)
	}
	if f := res.Fleet; f != nil {
		fmt.Fprintf(w, "always-on fleet at %.0f%% utilisation: %.2f GB for %.0f s = %s vs serverless %s; serverless is cheaper below %.1f%% utilisation\n",
			100*f.Utilisation, f.GB, res.HorizonS, usd(f.Cost), usd(f.Serverless), 100*f.BreakEven)
	}
}

func reasons(f *FunctionResult) string {
	var parts []string
	for r, n := range f.ThrottleReasons {
		parts = append(parts, fmt.Sprintf("%s %d", r, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// simulatedJSON is the simulated side of --against and of sweeps: the seed's
// seven figures for the seed model, the whole result otherwise.
func simulatedJSON(res *Result) any {
	if res.Model == "seed" {
		return seedJSON(res)
	}
	return res
}

func writeAgainstJSON(w io.Writer, res *Result, m *Measured) error {
	return json.NewEncoder(w).Encode(struct {
		Simulated any       `json:"simulated"`
		Measured  *Measured `json:"measured"`
	}{simulatedJSON(res), m})
}

func writeSweepJSON(w io.Writer, s Sweep, rows []SweepRow) error {
	type jrow struct {
		Value float64 `json:"value"`
		Res   any     `json:"result"`
		Base  any     `json:"without_provisioned,omitempty"`
	}
	out := struct {
		Param string `json:"param"`
		Rows  []jrow `json:"rows"`
	}{Param: s.Param}
	for _, r := range rows {
		j := jrow{Value: r.Value, Res: simulatedJSON(r.Res)}
		if r.Base != nil {
			j.Base = simulatedJSON(r.Base)
		}
		out.Rows = append(out.Rows, j)
	}
	return json.NewEncoder(w).Encode(out)
}
