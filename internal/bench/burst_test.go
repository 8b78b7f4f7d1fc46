package bench

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// BenchmarkColdBurst1000 is a diagnostic beside P3 and P7, not a goal: 1,000
// clients cold-start one function at the same instant (unlimited scaling
// rate, account limit 20,000, each handler holding its sandbox 2 s so every
// call needs a new one). It reports how many succeeded, the burst's cold
// starts per second, and how often placement's Raft leadership changed
// meanwhile: on 2 cores the burst can starve the leader's heartbeats until
// it loses its lease, failing every cold start in flight.
func BenchmarkColdBurst1000(b *testing.B) {
	c := upCluster(b, testcluster.Options{WorkerCapacity: p7Capacity})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p7InFlight), Timeout: 60 * time.Second}
	setAccountLimit(b, hc, gws[0], 2*p7Idle)
	const rounds = 3
	for i := 0; i < rounds; i++ {
		createFunction(b, hc, gws[0], synthetic(fnName("burst", i)))
	}
	for i := 0; i < rounds; i++ {
		for _, gw := range gws {
			dryRun(b, hc, gw, fnName("burst", i))
		}
	}
	var ok, total, changes int
	var elapsed time.Duration
	round := 0
	for b.Loop() {
		if round == rounds {
			b.Fatalf("at most %d rounds: run with -benchtime=%dx or less", rounds, rounds)
		}
		b.StopTimer()
		waitHealthy(b, c)
		b.StartTimer()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		n := 0
		go func() { // count leadership changes during the burst
			defer wg.Done()
			last := c.Leader()
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if l := c.Leader(); l != last {
					n++
					last = l
				}
			}
		}()
		start := time.Now()
		failed, msg := burst(hc, gws, fnName("burst", round), p7InFlight, 2000, 0, nil)
		elapsed += time.Since(start) - 2*time.Second
		close(stop)
		wg.Wait()
		if failed > 0 {
			b.Logf("round %d: %d of %d failed; first: %s", round, failed, p7InFlight, msg)
		}
		ok += p7InFlight - failed
		total += p7InFlight
		changes += n
		round++
	}
	b.ReportMetric(float64(ok)/float64(total), "ok-frac")
	b.ReportMetric(float64(changes)/float64(round), "leader-changes/burst")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "cold/s")
}
