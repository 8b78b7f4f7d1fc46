package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestCLIHelpAndUsageErrors(t *testing.T) {
	code, _, errOut := runCLI(t, "--help")
	if code != 0 || !strings.Contains(errOut, "Examples:") || !strings.Contains(errOut, "--model seed --trace") {
		t.Fatalf("--help: exit %d\n%s", code, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	os.WriteFile(bad, []byte("time_ms,function,duration_ms\n1,f,80\n2,f,oops\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{nil, "give exactly one input"},
		{[]string{"--trace", "a.csv", "--shape", "poisson"}, "give exactly one input"},
		{[]string{"--shape", "poisson", "--model", "python"}, "--model"},
		{[]string{"--shape", "poisson", "--model", "seed", "--provisioned", "5"}, "need --model full"},
		{[]string{"--shape", "wave"}, "shape \"wave\""},
		{[]string{"--trace", bad}, "bad.csv:3: duration_ms"},
		{[]string{"--shape", "poisson", "--sweep", "cpu=1:2:1"}, "--sweep"},
		{[]string{"--shape", "poisson", "--reserved", "950"}, "UnreservedConcurrentExecution"},
		{[]string{"--no-such-flag"}, "not defined"},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

func TestCLISeedJSONHasExactlyTheSeedKeys(t *testing.T) {
	code, out, errOut := runCLI(t, "--model", "seed", "--shape", "poisson", "--rate", "500", "--duration", "30s", "--json")
	if code != 0 {
		t.Fatal(errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("not one JSON object: %q", out)
	}
	for _, k := range []string{"invocations", "cold_starts", "warm_starts", "p50_ms", "p99_ms", "billed_ms", "cost_usd"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("missing %s in %v", k, m)
		}
	}
	if len(m) != 7 {
		t.Fatalf("%d keys, want 7: %v", len(m), m)
	}
}

func TestCLIFullModelTablePlotAndTrace(t *testing.T) {
	dir := t.TempDir()
	plot, trace := filepath.Join(dir, "p.svg"), filepath.Join(dir, "t.csv")
	code, out, errOut := runCLI(t, "--gen", "name=api,shape=spike,rate=5,peak=300,at=20s,for=10s", "--gen", "name=batch,shape=diurnal,rate=2,period=60s,memory=1024",
		"--duration", "60s", "--account-limit", "40", "--fleet-utilisation", "0.4", "--plot", plot, "--write-trace", trace)
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, want := range []string{"api", "batch", "TOTAL", "throttled", "ConcurrentInvocationLimitExceeded", "always-on fleet at 40% utilisation", "keep-alive holds"} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg, new(struct{ XMLName xml.Name })); err != nil || !bytes.Contains(svg, []byte("<polyline")) {
		t.Fatalf("plot is not SVG with lines: %v", err)
	}
	// The written trace replays to the same table.
	code, again, errOut := runCLI(t, "--trace", trace, "--account-limit", "40", "--fleet-utilisation", "0.4", "--horizon", "0")
	if code != 0 {
		t.Fatal(errOut)
	}
	if firstLines(out, 4) != firstLines(again, 4) {
		t.Fatalf("replaying the written trace differs:\n%s\n%s", out, again)
	}
	code, js, _ := runCLI(t, "--trace", trace, "--json", "--keep-alive-policy", "hybrid")
	var res Result
	if code != 0 || json.Unmarshal([]byte(js), &res) != nil || len(res.Functions) != 2 || res.KeepAlive == nil {
		t.Fatalf("full --json: exit %d %q", code, js)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func TestCLISweeps(t *testing.T) {
	code, out, errOut := runCLI(t, "--shape", "poisson", "--rate", "200", "--duration", "20s", "--cold-start", "180ms", "--sweep", "provisioned=0:40:20")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "provisioned") {
		t.Fatalf("provisioned sweep: %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "--shape", "poisson", "--rate", "1", "--duration", "600s", "--sweep", "keep-alive=10s:30s:10s")
	if code != 0 || !strings.Contains(out, "20s") || strings.Count(out, "\n") != 4 {
		t.Fatalf("keep-alive sweep: %s", out)
	}
	code, out, _ = runCLI(t, "--shape", "poisson", "--duration", "30s", "--horizon", "300s", "--cold-start", "180ms", "--provisioned", "50", "--sweep", "rate=100:300:100")
	if code != 0 || !strings.Contains(out, "the seed's exercise") || !strings.Contains(out, "answer:") {
		t.Fatalf("exercise: %s", out)
	}
}

func TestCLIAgainst(t *testing.T) {
	g := &fakeGateway{created: map[string]api.CreateFunctionInput{}, seen: map[string]bool{}}
	srv := httptest.NewServer(g)
	defer srv.Close()
	trace := filepath.Join(t.TempDir(), "t.csv")
	// All arrivals at time 0, so the real-time replay has nothing to wait for.
	os.WriteFile(trace, []byte("time_ms,function,duration_ms\n0,f,80\n0,f,80\n0,g,10\n"), 0o644)
	code, out, errOut := runCLI(t, "--model", "seed", "--trace", trace, "--against", srv.URL)
	if code != 0 || !strings.Contains(out, "simulated") || !strings.Contains(out, "measured") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, js, _ := runCLI(t, "--model", "seed", "--trace", trace, "--against", srv.URL, "--json")
	var both struct {
		Simulated SeedJSON
		Measured  Measured
	}
	if code != 0 || json.Unmarshal([]byte(js), &both) != nil || both.Measured.Total.Sent != 3 || both.Simulated.ColdStarts != 3 {
		t.Fatalf("--against --json: %q", js)
	}
}
