package dashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// chromium finds the browser. In CI (CI=true) a missing browser fails the
// test: the dashboard would otherwise go untested without anyone noticing.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI=true: a missing browser is a failure; apt-get install chromium)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// TestDashboardChartsLiveNumbers puts load on a cluster (warm and cold
// invocations, and throttles at a reserved concurrency of 1), kills a
// worker, injects a fault, then loads the dashboard in headless Chromium
// and compares what the page shows with the gateway's /metrics.
func TestDashboardChartsLiveNumbers(t *testing.T) {
	browser := chromium(t)
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2, WorkerCapacity: 16})
	url := c.GatewayURL(0)

	create(t, url, api.CreateFunctionInput{FunctionName: "dash", Runtime: "synthetic", MemorySize: 128, Timeout: 10,
		Coldstart: &api.SyntheticConfig{Duration: "1ms", ColdStart: "20ms"}})
	create(t, url, api.CreateFunctionInput{FunctionName: "tight", Runtime: "synthetic", MemorySize: 128, Timeout: 10,
		Coldstart: &api.SyntheticConfig{Duration: "150ms", ColdStart: "5ms"}})
	if code, body := do(t, http.MethodPut, url+"/2017-10-31/functions/tight/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(1)}); code != http.StatusOK {
		t.Fatalf("reserve tight: %d %s", code, body)
	}

	// Load: 4 clients invoke dash (cold starts first, then warm) until the
	// sampler has seen three seconds of it, so that the charts have rates
	// to draw; and 8 concurrent calls of tight at a reservation of 1, of
	// which at least some must be throttled.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[int]int{}
	call := func(fn string) {
		resp, err := http.Post(url+"/2015-03-31/functions/"+fn+"/invocations", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		mu.Lock()
		status[resp.StatusCode]++
		mu.Unlock()
	}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					call("dash")
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call("tight")
		}()
	}
	loadStart := time.Now()
	err := c.WaitFor(func() bool {
		var s gateway.Series
		getJSON(t, fmt.Sprintf("%s%s?since=%d", url, gateway.PathSeries, loadStart.UnixMilli()), &s)
		busy := 0
		for _, p := range s.Points {
			if p.Functions["dash"].Invocations > 0 {
				busy++
			}
		}
		return busy >= 3
	}, 20*time.Second)
	close(stop)
	wg.Wait()
	loadEnd := time.Now()
	if err != nil {
		t.Fatal("the sampler never saw three seconds of load")
	}
	// How many succeed depends on how busy the machine is; what the test
	// needs is some of each answer (cold and warm are checked below).
	if status[http.StatusTooManyRequests] == 0 || status[http.StatusOK] < 8 {
		t.Fatalf("load answers %v: want successes and some 429s", status)
	}

	// The chaos: a worker crashes, and a fault is injected into dash.
	victim := c.IDs(membership.RoleWorker)[1]
	// Whoever injects a fault outside the gateway announces it on
	// SubjectTimeline (here with placement's NATS rights, as the chaos
	// API of `coldstart up` would).
	nc := c.Client(membership.RolePlacement, "chaos")
	ann, _ := json.Marshal(gateway.TimelineEvent{Kind: "chaos_kill", Node: victim, Detail: "crash: no goodbye"})
	if err := nc.Publish(gateway.SubjectTimeline, ann); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	c.Kill(victim)
	if code, body := do(t, http.MethodPut, url+api.PathFunctionOptions+"dash/fault", api.FaultInput{Kind: "add-delay", Nth: []int{1 << 30}, DelayMs: 1}); code != http.StatusOK {
		t.Fatalf("inject fault: %d %s", code, body)
	}
	var tl gateway.TimelinePage
	if err := c.WaitFor(func() bool {
		getJSON(t, url+gateway.PathTimeline, &tl)
		return hasEvent(tl, gateway.EventNodeDown, victim) && hasEvent(tl, gateway.EventFaultInjected, "") && hasEvent(tl, "chaos_kill", victim)
	}, 20*time.Second); err != nil {
		t.Fatalf("timeline never showed the kill of %s and the fault: %+v", victim, tl.Events)
	}
	// The totals the page shows come from the sampler: wait for a sample
	// taken after the load ended, so that page and /metrics count the
	// same invocations (nothing invokes after loadEnd).
	if err := c.WaitFor(func() bool {
		var s gateway.Series
		getJSON(t, fmt.Sprintf("%s%s?since=%d", url, gateway.PathSeries, loadEnd.UnixMilli()), &s)
		return len(s.Points) > 0
	}, 10*time.Second); err != nil {
		t.Fatal("no sample after the load")
	}
	m := scrape(t, url)
	want := map[string]float64{
		"tot-inv":  m["coldstart_gateway_function_invocations_total"],
		"tot-cold": m[`coldstart_gateway_function_invocations_total{start="cold"}`],
		"tot-warm": m[`coldstart_gateway_function_invocations_total{start="warm"}`],
		"tot-err":  m["coldstart_gateway_function_errors_total"],
		"tot-thr":  m["coldstart_gateway_function_throttles_total"],
	}
	// The per-function counters agree with what the clients saw.
	if want["tot-inv"] != float64(status[http.StatusOK]) || want["tot-thr"] != float64(status[http.StatusTooManyRequests]) {
		t.Fatalf("/metrics %v disagrees with the answers %v", want, status)
	}
	if want["tot-cold"] < 1 || want["tot-warm"] < 1 {
		t.Fatalf("load should have had cold and warm starts: %v", want)
	}

	// Chromium: poll (each run has its own deadline) until the page has
	// drawn a sample taken after the load, then compare. Totals must match
	// exactly: the counters stopped moving at loadEnd and the page shows
	// a sample from after it, so any difference is a bug, not timing.
	dom := ""
	shotDir := artifactDir(t)
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		dom = dumpDOM(t, browser, url+"/dashboard")
		if st, ok := attr(dom, "body", "data-sample-time"); ok && atof(st) > float64(loadEnd.UnixMilli()) && strings.Contains(dom, `data-kind="node_down"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never showed a sample after the load and the kill; DOM:\n%s", clip(dom))
		}
	}
	t.Logf("dashboard rendered in headless Chromium after %s", time.Since(start).Round(time.Millisecond))
	for id, w := range want {
		got, ok := valueOf(dom, id)
		if !ok || got != w {
			t.Errorf("page #%s = %v (found %v), /metrics says %v", id, got, ok, w)
		}
	}
	if p99, _ := valueOf(dom, "cur-p99"); p99 < 0 {
		t.Errorf("p99 %v", p99)
	}
	// Chart.js sizes each canvas it draws into (its height attribute); an
	// undrawn canvas keeps none.
	for _, id := range []string{"chart-inv", "chart-lat", "chart-err", "chart-conc"} {
		if !regexp.MustCompile(`<canvas id="` + id + `"[^>]* height="\d+"`).MatchString(dom) {
			t.Errorf("chart %s was not drawn", id)
		}
	}
	if n, _ := attr(dom, "body", "data-points"); atof(n) < 3 {
		t.Errorf("charts drew %s points, want the 3+ of the load", n)
	}
	// The invocation chart's peak rate must be a real one: above zero, and
	// at most what the whole load could have done in one second (all of
	// it landing in a single interval).
	if peak, _ := attr(dom, "body", "data-peak-invocations"); atof(peak) <= 0 || atof(peak) > want["tot-inv"] {
		t.Errorf("invocation chart peak %s/s (total %v)", peak, want["tot-inv"])
	}
	if peak, _ := attr(dom, "body", "data-peak-throttles"); atof(peak) <= 0 || atof(peak) > want["tot-thr"] {
		t.Errorf("throttle chart peak %s/s (total %v)", peak, want["tot-thr"])
	}
	if !regexp.MustCompile(`data-kind="node_down" data-node="` + regexp.QuoteMeta(victim) + `"`).MatchString(dom) {
		t.Errorf("the timeline panel lacks the kill of %s", victim)
	}
	if !strings.Contains(dom, `data-kind="chaos_kill" data-node="`+victim+`"`) {
		t.Error("the timeline panel lacks the announced chaos kill")
	}
	if !strings.Contains(dom, `data-kind="fault_injected"`) {
		t.Error("the timeline panel lacks the injected fault")
	}
	if !strings.Contains(dom, `<option value="dash">dash</option>`) || !strings.Contains(dom, `<option value="tight">tight</option>`) {
		t.Error("the function selector lacks the functions")
	}

	shot := filepath.Join(shotDir, "dashboard.png")
	screenshot(t, browser, url+"/dashboard", shot)
	b, err := os.ReadFile(shot)
	if err != nil || len(b) < 10_000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s: %d bytes, err %v", shot, len(b), err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(b))
}

// artifactDir is $DASHTEST_ARTIFACTS if set (CI keeps it), else the
// test's temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("DASHTEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// chromeArgs are the flags every run needs: headless without a sandbox
// (tests run as root in containers), its own profile, and a virtual-time
// budget, so that the page runs a few of its one-second ticks and the
// browser exits once they and their fetches are done.
func chromeArgs(t *testing.T, extra ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000"}, extra...)
}

func dumpDOM(t *testing.T, browser, url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, browser, chromeArgs(t, "--dump-dom", url)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, clip(stderr.String()))
	}
	return string(out)
}

func screenshot(t *testing.T, browser, url, path string) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, browser, chromeArgs(t, "--window-size=1400,2000", "--screenshot="+path, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, clip(string(out)))
	}
}

var valueRE = regexp.MustCompile(`id="([a-z0-9-]+)" data-value="([^"]*)"`)

func valueOf(dom, id string) (float64, bool) {
	for _, m := range valueRE.FindAllStringSubmatch(dom, -1) {
		if m[1] == id && m[2] != "" {
			v, err := strconv.ParseFloat(m[2], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func attr(dom, tag, name string) (string, bool) {
	m := regexp.MustCompile(`<` + tag + `[^>]* ` + name + `="([^"]*)"`).FindStringSubmatch(dom)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

func hasEvent(p gateway.TimelinePage, kind, node string) bool {
	for _, e := range p.Events {
		if e.Kind == kind && (node == "" || e.Node == node) {
			return true
		}
	}
	return false
}

// scrape sums each coldstart_gateway_function_* counter over its series,
// in total and per start label.
func scrape(t *testing.T, url string) map[string]float64 {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	line := regexp.MustCompile(`^(coldstart_gateway_function_[a-z_]+_total)\{([^}]*)\} (\S+)$`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v := atof(m[3])
		out[m[1]] += v
		for _, s := range []string{"cold", "warm"} {
			if strings.Contains(m[2], `start="`+s+`"`) {
				out[m[1]+`{start="`+s+`"}`] += v
			}
		}
	}
	return out
}

func create(t *testing.T, url string, in api.CreateFunctionInput) {
	if code, body := do(t, http.MethodPost, url+"/2015-03-31/functions", in); code != http.StatusCreated {
		t.Fatalf("create %s: %d %s", in.FunctionName, code, body)
	}
}

func do(t *testing.T, method, url string, v any) (int, string) {
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func getJSON(t *testing.T, url string, v any) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func intp(i int) *int { return &i }

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "..."
	}
	return s
}
