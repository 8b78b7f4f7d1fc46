package bench

import (
	"net/http"
	"sync"
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
	start := time.Now()
	cpu0 := CPUTime()
	for b.Loop() {
		var wg sync.WaitGroup
		for cl := 0; cl < p2Clients; cl++ {
			wg.Add(1)
			go func(cl int) {
				defer wg.Done()
				for i := 0; i < p2PerClient; i++ {
					post(hc, invokeURL(gws[cl%2], "p2"), payload100)
				}
			}(cl)
		}
		wg.Wait()
		n += p2Clients * p2PerClient
	}
	el := time.Since(start)
	b.ReportMetric(float64(n)/el.Seconds(), "inv/s")
	b.ReportMetric(float64(CPUTime()-cpu0)/float64(el), "cores")
}
