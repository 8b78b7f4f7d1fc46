package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// p4Batch is how many fresh versions of the process function are
// published at a time, outside the timed invokes.
const p4Batch = 100

// BenchmarkP4ProcessCold is goal P4's cold half: a new process sandbox of
// a tiny aws-lambda-go function (testdata/procfn) through the whole
// cluster. Each iteration invokes a published version never invoked
// before: a sandbox is per version, so the call is cold by construction
// (warm miss, placement's grant, sandbox create), as a new function's
// first call is, and nothing else (no deploy tearing an old sandbox down,
// no concurrent call) happens meanwhile; every call is checked cold.
// Versions rather than new functions because each CreateFunction carries
// the whole zip (3.4 MB, 4.5 MB as base64 JSON), and creating them in bulk
// between timed calls starves placement on 2 cores; a version costs two
// small control writes (an environment change, then PublishVersion). All
// versions share the zip, so each worker fetches and unpacks it once,
// before timing.
//
// Two figures per call: the gateway's round trip, and the worker's init
// (X-Coldstart-Init-Ms: sandbox create plus runtime init until the first
// GET /next). The same run's baseline, in alternating order, is a bare
// fork/exec of the same binary until its first GET /next on a loopback
// Runtime API. ns/op is the mean cold round trip.
//
// Goal: cold ready p50 <= 10 ms (the worker's init; the round trip is
// reported beside it).
func BenchmarkP4ProcessCold(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(2)}
	bin, _ := procfnBuild(b)
	bare := newBareRuntimeAPI(b)
	createFunction(b, hc, gw, processFn(b, "p4c"))
	dryRun(b, hc, gw, "p4c")
	var versions []string
	more := func(n int) {
		for k := 0; k < n; k++ {
			versions = append(versions, publishVersion(b, hc, gw, "p4c", len(versions)))
		}
		for _, v := range versions[len(versions)-n:] {
			dryRun(b, hc, gw, "p4c:"+v)
		}
	}
	// Warm up: cold-start versions not timed until every worker has
	// unpacked the bundle once (placement spreads new sandboxes) and the
	// connection and code paths are warm.
	more(30)
	workers := map[string]bool{}
	for i := 0; i < 30 && (len(workers) < 3 || i < 10); i++ {
		r, err := invoke(hc, gw, "p4c:"+versions[i], payload100)
		if err != nil || r.status != http.StatusOK || !r.cold {
			b.Fatalf("warm-up cold invoke: %v %+v", err, r)
		}
		workers[r.worker] = true
		bare.execReady(b, bin)
	}
	next := len(versions)
	more(p4Batch)

	var cold, initD, exec []time.Duration
	var coldSum time.Duration
	i := 0
	for b.Loop() {
		if next == len(versions) {
			b.StopTimer()
			more(p4Batch)
			b.StartTimer()
		}
		fn := "p4c:" + versions[next]
		next++
		doCold := func() {
			r, err := invoke(hc, gw, fn, payload100)
			if err != nil || r.status != http.StatusOK || !r.cold || r.initMs <= 0 {
				b.Fatalf("cold invoke of %s: %v %+v", fn, err, r)
			}
			cold = append(cold, r.lat)
			coldSum += r.lat
			initD = append(initD, time.Duration(r.initMs*float64(time.Millisecond)))
		}
		doExec := func() { exec = append(exec, bare.execReady(b, bin)) }
		if i%2 == 0 {
			doCold()
			doExec()
		} else {
			doExec()
			doCold()
		}
		i++
	}
	b.ReportMetric(float64(coldSum.Nanoseconds())/float64(len(cold)), "ns/op")
	p50, _ := reportLatency(b, "", cold)
	ip50, _ := reportLatency(b, "init-", initD)
	ep50, _ := reportLatency(b, "exec-", exec)
	b.ReportMetric(float64(ip50)/float64(ep50), "init-x-exec")
	b.ReportMetric(float64(p50)/float64(ep50), "x-exec")
	b.ReportMetric(float64(len(workers)), "warmup-workers")
}

// publishVersion gives fn a configuration no version has yet (an
// environment variable numbered n) and publishes it, returning the new
// version's number.
func publishVersion(b *testing.B, hc *http.Client, gw, fn string, n int) string {
	b.Helper()
	env := &api.Environment{Variables: map[string]string{"BENCH_VERSION": strconv.Itoa(n)}}
	control(b, hc, http.MethodPut, gw+api.PathFunctions+"/"+fn+"/configuration", api.UpdateFunctionConfigurationInput{Environment: env}, http.StatusOK)
	var out api.FunctionConfiguration
	body := control(b, hc, http.MethodPost, gw+api.PathFunctions+"/"+fn+"/versions", api.PublishVersionInput{}, http.StatusCreated)
	if err := json.Unmarshal(body, &out); err != nil || out.Version == "" || out.Version == "$LATEST" {
		b.Fatalf("publish %s: %v %s", fn, err, body)
	}
	return out.Version
}

// control sends one control-plane request and returns the answer's body,
// failing unless its status is want.
func control(b *testing.B, hc *http.Client, method, url string, in any, want int) []byte {
	b.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, out)
	}
	return out
}

// BenchmarkP4ProcessWarm is goal P4's warm half: warm invokes of one
// process function (testdata/procfn) by one keep-alive client through the
// cluster. The same run's baselines are a warm invoke of a synthetic 0 ms
// function (the platform without a process: the difference is the Runtime
// API exchange with the sandbox) and a bare HTTP loopback round trip of
// the same 100 B body (net/http echo, same transport). Each iteration does
// one of each, in rotating order. ns/op is the mean warm process invoke;
// fn-p50-ms is the worker's own timing of the handler's run.
//
// Goal: warm invoke p50 <= 1 ms.
func BenchmarkP4ProcessWarm(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(2)}
	createFunction(b, hc, gw, processFn(b, "p4w"))
	createFunction(b, hc, gw, synthetic("p4s"))
	dryRun(b, hc, gw, "p4w")
	dryRun(b, hc, gw, "p4s")
	base := echoServer(b).URL + "/echo"
	// The first call of each function cold-starts its only sandbox; the
	// rest are warm, as for a client calling one function in a loop.
	for i := 0; i < 200; i++ {
		for _, fn := range []string{"p4w", "p4s"} {
			if r, err := invoke(hc, gw, fn, payload100); err != nil || r.status != http.StatusOK {
				b.Fatalf("warm-up invoke of %s: %v %+v", fn, err, r)
			}
		}
		if _, err := post(hc, base, payload100); err != nil {
			b.Fatal(err)
		}
	}
	var proc, synth, http1, dur []time.Duration
	var procSum time.Duration
	cold := 0
	warmOp := func(fn string, lats *[]time.Duration) {
		r, err := invoke(hc, gw, fn, payload100)
		if err != nil || r.status != http.StatusOK {
			b.Fatalf("invoke of %s: %v %+v", fn, err, r)
		}
		if r.cold {
			cold++
		}
		*lats = append(*lats, r.lat)
		if fn == "p4w" {
			procSum += r.lat
			dur = append(dur, time.Duration(r.durMs*float64(time.Millisecond)))
		}
	}
	ops := []func(){
		func() { warmOp("p4w", &proc) },
		func() { warmOp("p4s", &synth) },
		func() {
			t0 := time.Now()
			if _, err := post(hc, base, payload100); err != nil {
				b.Fatal(err)
			}
			http1 = append(http1, time.Since(t0))
		},
	}
	i := 0
	for b.Loop() {
		for k := range ops {
			ops[(i+k)%len(ops)]()
		}
		i++
	}
	b.ReportMetric(float64(procSum.Nanoseconds())/float64(len(proc)), "ns/op")
	p50, _ := reportLatency(b, "", proc)
	sp50, _ := reportLatency(b, "synth-", synth)
	hp50, _ := reportLatency(b, "http-", http1)
	reportLatency(b, "fn-", dur)
	b.ReportMetric(float64(p50)/float64(sp50), "x-synth")
	b.ReportMetric(float64(p50)/float64(hp50), "x-http")
	b.ReportMetric(float64(cold), "cold")
}
