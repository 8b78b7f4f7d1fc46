// Command benchtable reads `go test -bench` output of internal/bench on
// stdin and prints, per benchmark, the median (and range) of every metric
// over the runs, then each performance goal with its verdict.
//
//	go test ./internal/bench -run '^$' -bench . -count 5 | go run ./internal/bench/benchtable
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/coldstart-dev/coldstart/internal/bench"
)

// goal is one quality target on one metric of one benchmark.
type goal struct {
	id, bench, metric string
	max               bool // the metric must stay at or below limit
	limit             float64
	text              string
}

var goals = []goal{
	{"P1", "BenchmarkP1WarmInvoke", "p50-ms", true, 0.5, "warm invoke p50 <= 0.5 ms"},
	{"P1", "BenchmarkP1WarmInvoke", "p99-ms", true, 2, "warm invoke p99 <= 2 ms"},
	{"P1", "BenchmarkP1WarmInvoke", "x-http", true, 4, "warm p50 <= 4x HTTP round trip"},
	{"P2", "BenchmarkP2WarmThroughput", "inv/s", false, 10000, ">= 10,000 invocations/s"},
	{"P2", "BenchmarkP2WarmThroughput", "of-http", false, 0.5, ">= 50% of the HTTP-only ceiling"},
	{"P1", "BenchmarkP1WarmInvokeProcess", "p50-ms", true, 0.5, "process function: warm invoke p50 <= 0.5 ms"},
	{"P1", "BenchmarkP1WarmInvokeProcess", "p99-ms", true, 2, "process function: warm invoke p99 <= 2 ms"},
	{"P1", "BenchmarkP1WarmInvokeProcess", "x-http", true, 4, "process function: warm p50 <= 4x HTTP round trip"},
	{"P2", "BenchmarkP2WarmThroughputProcess", "inv/s", false, 10000, "process function: >= 10,000 invocations/s"},
	{"P2", "BenchmarkP2WarmThroughputProcess", "of-http", false, 0.5, "process function: >= 50% of the HTTP-only ceiling"},
	{"P3", "BenchmarkP3ColdStart", "p50-ms", true, 5, "cold invoke p50 <= 5 ms"},
	{"P3", "BenchmarkP3ColdStart", "p99-ms", true, 20, "cold invoke p99 <= 20 ms"},
	{"P4", "BenchmarkP4ProcessCold", "init-p50-ms", true, 10, "process sandbox cold ready (worker's init) p50 <= 10 ms"},
	{"P4", "BenchmarkP4ProcessWarm", "p50-ms", true, 1, "process function warm invoke p50 <= 1 ms"},
	{"P5", "BenchmarkP5LeaderKill", "median-ms", true, 1500, "leader killed -> cold starts again, median <= 1.5 s"},
	{"P5", "BenchmarkP5WorkerKill", "median-ms", true, 2000, "worker killed -> released and rerouted, median <= 2 s"},
	{"P7", "BenchmarkP7Scale", "peak-MiB", true, 1024, "RSS with 10,000 idle + 1,000 in flight <= 1 GiB"},
}

func main() {
	runs, order, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines on stdin")
		os.Exit(1)
	}
	fmt.Println("Medians over runs (min..max in brackets):")
	for _, name := range order {
		ms := runs[name]
		fmt.Printf("\n%s  (%d runs)\n", name, len(ms[firstKey(ms)]))
		for _, unit := range sortedKeys(ms) {
			xs := ms[unit]
			lo, hi := minMax(xs)
			fmt.Printf("  %-16s %12s   [%s .. %s]\n", unit, num(bench.Median(append([]float64(nil), xs...))), num(lo), num(hi))
		}
	}
	fmt.Println("\nGoals:")
	fmt.Printf("  %-3s %-60s %12s  %s\n", "id", "goal", "median", "verdict")
	for _, g := range goals {
		xs, ok := runs[g.bench][g.metric]
		if !ok {
			fmt.Printf("  %-3s %-60s %12s  %s\n", g.id, g.text, "-", "not run")
			continue
		}
		m := bench.Median(append([]float64(nil), xs...))
		verdict := "met"
		if (g.max && m > g.limit) || (!g.max && m < g.limit) {
			verdict = "MISSED"
		}
		fmt.Printf("  %-3s %-60s %12s  %s\n", g.id, g.text, num(m), verdict)
	}
}

// parse collects metric values per benchmark (GOMAXPROCS suffix dropped),
// in the order benchmarks first appear.
func parse(r io.Reader) (map[string]map[string][]float64, []string, error) {
	runs := map[string]map[string][]float64{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with a benchmark name
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: metric %q: %w", name, f[i+1], err)
			}
			runs[name][f[i+1]] = append(runs[name][f[i+1]], v)
		}
	}
	return runs, order, sc.Err()
}

func firstKey(m map[string][]float64) string { return sortedKeys(m)[0] }

func sortedKeys(m map[string][]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func minMax(xs []float64) (lo, hi float64) {
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
