package bench

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

func BenchmarkDiagP2InvokeOnly(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p2Clients)}
	createFunction(b, hc, gws[0], synthetic("p2"))
	for _, gw := range gws {
		dryRun(b, hc, gw, "p2")
	}
	prewarm(b, hc, gws, "p2", 3*p2Clients, 300*time.Millisecond)
	n := 0
	var cold, bad atomic.Int64
	var mu sync.Mutex
	var lats []time.Duration
	start := time.Now()
	cpu0 := CPUTime()
	for b.Loop() {
		var wg sync.WaitGroup
		for cl := 0; cl < p2Clients; cl++ {
			wg.Add(1)
			go func(cl int) {
				defer wg.Done()
				var my []time.Duration
				for i := 0; i < p2PerClient; i++ {
					r, err := invoke(hc, gws[cl%2], "p2", payload100)
					if err != nil || r.status != 200 {
						bad.Add(1)
					}
					if r.cold {
						cold.Add(1)
					}
					my = append(my, r.lat)
				}
				mu.Lock()
				lats = append(lats, my...)
				mu.Unlock()
			}(cl)
		}
		wg.Wait()
		n += p2Clients * p2PerClient
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "inv/s")
	b.ReportMetric(float64(CPUTime()-cpu0)/float64(el), "cores")
	b.ReportMetric(float64(cold.Load()), "cold")
	b.ReportMetric(float64(bad.Load()), "bad")
	reportLatency(b, "", lats)
	b.ReportMetric(Ms(Percentile(lats, 0.999)), "p999-ms")
	b.ReportMetric(Ms(lats[len(lats)-1]), "max-ms")
	for _, id := range c.IDs("worker") {
		b.Logf("%s %+v", id, c.Node(id).Worker.Stats().Idle)
	}
}
