package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// F1: `coldstart sim --model seed` must give the seed's serverless_sim.py
// figures exactly on the same arrivals. testdata/serverless_sim.py is the
// seed's code with only its output changed (it writes the arrivals it fed to
// Platform.invoke, and its result dict).

const seedScript = "testdata/serverless_sim.py"

type pyResult struct {
	Invocations int64   `json:"invocations"`
	ColdStarts  int64   `json:"cold_starts"`
	WarmStarts  int64   `json:"warm_starts"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	BilledMs    float64 `json:"billed_ms"`
	Seconds     float64 `json:"seconds"`
}

func needPython(t testing.TB) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	return py
}

func runPython(t testing.TB, args ...string) pyResult {
	t.Helper()
	py := needPython(t)
	out, err := exec.Command(py, append([]string{seedScript}, args...)...).Output()
	if err != nil {
		t.Fatalf("serverless_sim.py %v: %v\n%s", args, err, out)
	}
	var r pyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("serverless_sim.py output %q: %v", out, err)
	}
	return r
}

// runSeedCLI runs `coldstart sim --model seed --json` on a trace file.
func runSeedCLI(t *testing.T, trace string, coldMs, ttlS float64) SeedJSON {
	t.Helper()
	var out, errb bytes.Buffer
	args := []string{"--model", "seed", "--trace", trace, "--cold-start", msFlag(coldMs), "--keep-alive", secFlag(ttlS), "--memory", "512", "--json"}
	if code := Main(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("sim %v: exit %d: %s", args, code, errb.String())
	}
	var got SeedJSON
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("sim --json output %q: %v", out.String(), err)
	}
	return got
}

func msFlag(ms float64) string { return time.Duration(ms * float64(time.Millisecond)).String() }
func secFlag(s float64) string { return time.Duration(s * float64(time.Second)).String() }
func num64(x float64) string   { return strconv.FormatFloat(x, 'g', -1, 64) }

func checkSame(t *testing.T, name string, want pyResult, got SeedJSON) {
	t.Helper()
	if got.Invocations != want.Invocations || got.ColdStarts != want.ColdStarts || got.WarmStarts != want.WarmStarts ||
		got.P50Ms != want.P50Ms || got.P99Ms != want.P99Ms || got.BilledMs != want.BilledMs {
		t.Fatalf("%s: sim %+v\nseed %+v", name, got, want)
	}
	// The cost is billed GB-s times the price, without the seed's extra x1000.
	if c := want.BilledMs / 1000 * 0.5 * 0.0000166667; got.CostUSD != c {
		t.Fatalf("%s: cost %v, want %v", name, got.CostUSD, c)
	}
	if want.Invocations == 0 {
		t.Fatalf("%s: empty scenario", name)
	}
}

func TestSeedModelMatchesSeedSimulator(t *testing.T) {
	needPython(t)
	cases := []struct {
		name         string
		rate, durS   float64
		dist         string
		seed         int
		coldMs, ttlS float64
	}{
		{"steady", 50, 300, "80", 7, 180, 600},                      // the seed's three scenarios
		{"light", 5, 300, "80,80,80,200", 7, 180, 600},              //
		{"spike", 500, 30, "80", 7, 180, 600},                       //
		{"sparse-ttl", 0.02, 40000, "80,200", 11, 180, 60},          // most arrivals after an eviction
		{"short-ttl", 20, 120, "80,1000,2500", 3, 250, 2},           // sandboxes evicted between bursts
		{"fractional", 100, 60, "12.5,80.25,333.3", 99, 180.5, 1.5}, // float durations and TTL
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			trace := filepath.Join(dir, "trace.csv")
			want := runPython(t, "--rate", num64(c.rate), "--duration", num64(c.durS), "--dist", c.dist,
				"--seed", strconv.Itoa(c.seed), "--cold-start-ms", num64(c.coldMs), "--ttl-s", num64(c.ttlS), "--trace", trace)
			checkSame(t, c.name, want, runSeedCLI(t, trace, c.coldMs, c.ttlS))
		})
	}
}

// Other shapes: coldstart generates the arrivals, the seed's Platform replays
// them (its invoke() is called in trace order, exactly as simulate() does).
func TestSeedModelMatchesSeedPlatformOnShapes(t *testing.T) {
	needPython(t)
	h, _ := ParseHandler("choice:80ms|80ms|120ms|900ms")
	cases := []struct {
		spec         ShapeSpec
		coldMs, ttlS float64
	}{
		{ShapeSpec{Shape: ShapeStep, Rate: 20, Duration: 300 * time.Second, Seed: 1, At: 100 * time.Second}, 180, 600},
		{ShapeSpec{Shape: ShapeSpike, Rate: 2, Peak: 400, Duration: 240 * time.Second, Seed: 2, At: 60 * time.Second, For: 20 * time.Second}, 180, 30},
		{ShapeSpec{Shape: ShapeDiurnal, Rate: 3, Duration: 4 * time.Hour, Period: time.Hour, Seed: 3}, 300, 120},
		{ShapeSpec{Shape: ShapeSteady, Rate: 7, Duration: 60 * time.Second, Seed: 4}, 180, 0.5},
	}
	for _, c := range cases {
		t.Run(c.spec.Shape, func(t *testing.T) {
			c.spec.Name, c.spec.Handler = "f", h
			tr, err := Generate([]ShapeSpec{c.spec})
			if err != nil {
				t.Fatal(err)
			}
			trace := writeTrace(t, tr)
			want := runPython(t, "--replay", trace, "--cold-start-ms", num64(c.coldMs), "--ttl-s", num64(c.ttlS))
			checkSame(t, c.spec.Shape, want, runSeedCLI(t, trace, c.coldMs, c.ttlS))
		})
	}
}

// Ties: arrivals on a millisecond grid with durations that end exactly on
// later arrivals, so `busy_until <= now` and `now - last_used >= ttl` are
// decided by equality as often as possible.
func TestSeedModelMatchesSeedPlatformOnTies(t *testing.T) {
	needPython(t)
	var b bytes.Buffer
	b.WriteString("time_ms,function,duration_ms\n")
	for i := 0; i < 3000; i++ {
		t := (i / 3) * 40                         // three arrivals per instant
		fmt.Fprintf(&b, "%d,f,%d\n", t, 40*(i%4)) // durations end on the grid
	}
	trace := filepath.Join(t.TempDir(), "ties.csv")
	if err := os.WriteFile(trace, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []float64{0.04, 0.12, 1} {
		want := runPython(t, "--replay", trace, "--cold-start-ms", "40", "--ttl-s", num64(ttl))
		checkSame(t, "ties ttl "+num64(ttl), want, runSeedCLI(t, trace, 40, ttl))
	}
}

func writeTrace(t testing.TB, tr *Trace) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trace.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(f, tr); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
