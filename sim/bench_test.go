package sim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"
)

// P6: the simulator on a 1M-invocation trace, beside the seed's Python
// simulator on the same trace. Two traces: the seed's steady scenario
// (50 rps, where its sandbox list stays short) and its spike scenario
// (500 rps, about 130 sandboxes), each run long enough for 1M requests.

type p6Trace struct {
	name      string
	rate      float64
	durationS float64
	once      sync.Once
	trace     *Trace
}

var p6Traces = []*p6Trace{
	{name: "steady-50rps", rate: 50, durationS: 20000},
	{name: "spike-500rps", rate: 500, durationS: 2000},
}

func (p *p6Trace) get(tb testing.TB) *Trace {
	p.once.Do(func() {
		h, _ := ParseHandler("80ms")
		tr, err := Generate([]ShapeSpec{{Name: "seed", Shape: ShapePoisson, Rate: p.rate, Duration: time.Duration(p.durationS * float64(time.Second)), Seed: 7, Handler: h}})
		if err != nil {
			tb.Fatal(err)
		}
		p.trace = tr
	})
	return p.trace
}

func benchSeed(b *testing.B, p *p6Trace) {
	tr := p.get(b)
	cfg := DefaultSeedConfig()
	b.ReportAllocs()
	b.ResetTimer()
	var res *Result
	for i := 0; i < b.N; i++ {
		res = RunSeed(tr, cfg)
	}
	b.ReportMetric(float64(len(tr.Events))*float64(b.N)/b.Elapsed().Seconds(), "inv/s")
	if res.Total.Invocations != int64(len(tr.Events)) {
		b.Fatalf("%d invocations, want %d", res.Total.Invocations, len(tr.Events))
	}
}

// BenchmarkSimSeed1M is P6's figure: `--model seed` on the 1M-request
// steady trace, one goroutine, the trace already in memory.
func BenchmarkSimSeed1M(b *testing.B)      { benchSeed(b, p6Traces[0]) }
func BenchmarkSimSeed1MSpike(b *testing.B) { benchSeed(b, p6Traces[1]) }

func BenchmarkSimFull1M(b *testing.B) {
	tr := p6Traces[0].get(b)
	cfg := DefaultFullConfig()
	cfg.Default.ColdStart = 180e6
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := RunFull(tr, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(tr.Events))*float64(b.N)/b.Elapsed().Seconds(), "inv/s")
}

func BenchmarkReadCSV1M(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteCSV(&buf, p6Traces[0].get(b)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ReadCSV(bytes.NewReader(buf.Bytes()), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestP6SeedSimulatorBaseline measures P6 in one run: the Go model and the
// seed's Python Platform on the same 1M-request traces, medians of 3 runs
// each, and their ratio. It asserts the figures agree, never the timing
// (timings belong in BENCHMARKS.md). Run it with COLDSTART_P6=1:
//
//	COLDSTART_P6=1 go test ./sim -run TestP6 -v -timeout 30m
func TestP6SeedSimulatorBaseline(t *testing.T) {
	if os.Getenv("COLDSTART_P6") == "" {
		t.Skip("set COLDSTART_P6=1 to time the seed's Python simulator (about a minute per trace)")
	}
	py := needPython(t)
	for _, p := range p6Traces {
		tr := p.get(t)
		path := writeTrace(t, tr)
		var pySec []float64
		var want pyResult
		for i := 0; i < 3; i++ {
			out, err := exec.Command(py, seedScript, "--replay", path).Output()
			if err != nil {
				t.Fatal(err)
			}
			want = mustPy(t, out)
			pySec = append(pySec, want.Seconds)
		}
		r := testing.Benchmark(func(b *testing.B) { benchSeed(b, p) })
		goSec := float64(r.NsPerOp()) / 1e9
		got := RunSeed(tr, DefaultSeedConfig()).Total
		if got.Cold != want.ColdStarts || got.Warm != want.WarmStarts || got.BilledMs != want.BilledMs {
			t.Fatalf("%s: figures differ: %+v vs %+v", p.name, got, want)
		}
		pyMed := median(pySec)
		t.Logf("P6 %s: %d requests, %d cold; Go %.1f ms = %.2fM inv/s; Python median %.0f ms = %.2fM inv/s (runs %v); ratio %.1fx",
			p.name, len(tr.Events), got.Cold, goSec*1000, float64(len(tr.Events))/goSec/1e6, pyMed*1000,
			float64(len(tr.Events))/pyMed/1e6, fmtSecs(pySec), pyMed/goSec)
	}
}

func mustPy(t *testing.T, out []byte) pyResult {
	t.Helper()
	var r pyResult
	if err := jsonUnmarshal(out, &r); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	return r
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtSecs(v []float64) string {
	var b bytes.Buffer
	for i, x := range v {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.2fs", x)
	}
	return b.String()
}
