package bench

import (
	"fmt"
	"github.com/coldstart-dev/coldstart/internal/api"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

const (
	p2Clients   = 64
	p2PerClient = 25 // invocations per client per phase
)

// BenchmarkP2WarmThroughput is goal P2: warm synchronous invocations/s of
// 64 keep-alive clients (spread over both gateways) with limits enforced
// (default account limit 1000, `coldstart up`'s scaling rate), against the
// same run's HTTP-only ceiling: the same 64 clients and transport posting
// the same 100 B body to a bare net/http echo server. Each iteration runs
// one phase of each, in alternating order. ns/op is per warm invocation.
//
// Goal: >= 10,000 invocations/s and >= 50% of the HTTP-only ceiling.
func BenchmarkP2WarmThroughput(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p2Clients)}
	createFunction(b, hc, gws[0], synthetic("p2"))
	for _, gw := range gws {
		dryRun(b, hc, gw, "p2")
	}
	// Three warm sandboxes per client: a worker whose idle sandboxes run
	// out answers busy and the gateway tries another.
	prewarm(b, hc, gws, "p2", 3*p2Clients, 300*time.Millisecond)
	base := echoServer(b).URL + "/echo"

	var cold, failed atomic.Int64
	// cpuInv and cpuHTTP are the process CPU time of each kind of phase:
	// cores used = CPU / wall tells CPU-bound (near 2) from waiting.
	var cpuInv, cpuHTTP time.Duration
	phase := func(target func(client int) string, isInvoke bool) (int, time.Duration) {
		var wg sync.WaitGroup
		start := time.Now()
		cpu0 := CPUTime()
		defer func() {
			if isInvoke {
				cpuInv += CPUTime() - cpu0
			} else {
				cpuHTTP += CPUTime() - cpu0
			}
		}()
		for cl := 0; cl < p2Clients; cl++ {
			wg.Add(1)
			go func(cl int) {
				defer wg.Done()
				url := target(cl)
				for i := 0; i < p2PerClient; i++ {
					resp, err := post(hc, url, payload100)
					switch {
					case err != nil || resp.StatusCode != http.StatusOK:
						failed.Add(1)
					case isInvoke && resp.Header.Get(api.HeaderCold) == "true":
						cold.Add(1)
					}
				}
			}(cl)
		}
		wg.Wait()
		return p2Clients * p2PerClient, time.Since(start)
	}
	invokeAt := func(cl int) string { return invokeURL(gws[cl%len(gws)], "p2") }
	echoAt := func(int) string { return base }
	// Open every keep-alive connection before timing.
	phase(invokeAt, true)
	phase(echoAt, false)
	cold.Store(0)
	cpuInv, cpuHTTP = 0, 0

	var nInv, nHTTP int
	var tInv, tHTTP time.Duration
	it := 0
	for b.Loop() {
		if it%2 == 0 {
			n, d := phase(invokeAt, true)
			nInv, tInv = nInv+n, tInv+d
			n, d = phase(echoAt, false)
			nHTTP, tHTTP = nHTTP+n, tHTTP+d
		} else {
			n, d := phase(echoAt, false)
			nHTTP, tHTTP = nHTTP+n, tHTTP+d
			n, d = phase(invokeAt, true)
			nInv, tInv = nInv+n, tInv+d
		}
		it++
	}
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d requests failed (throttled or errors) during the warm phases", f)
	}
	rate := float64(nInv) / tInv.Seconds()
	httpRate := float64(nHTTP) / tHTTP.Seconds()
	b.ReportMetric(float64(tInv.Nanoseconds())/float64(nInv), "ns/op")
	b.ReportMetric(rate, "inv/s")
	b.ReportMetric(httpRate, "http-req/s")
	b.ReportMetric(rate/httpRate, "of-http")
	b.ReportMetric(float64(cold.Load()), "cold")
	b.ReportMetric(float64(cpuInv)/float64(tInv), "cores")
	b.ReportMetric(float64(cpuHTTP)/float64(tHTTP), "http-cores")
}

// fnName numbers fresh functions.
func fnName(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
