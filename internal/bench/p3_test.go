package bench

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// p3Batch is how many fresh functions are created at a time, outside the
// timed invokes.
const p3Batch = 100

// BenchmarkP3ColdStart is goal P3: the platform's cold-start overhead with
// every modelled delay 0, so what is left is the gateway's warm miss (NATS
// no responders), placement's Raft commit on boltdb (3 nodes, fsync) and the
// worker's sandbox creation. Each iteration invokes a function never invoked
// before (cold by construction; one client), then invokes it again (warm,
// the same run's baseline). ns/op is the mean cold invoke.
//
// Goal: cold p50 <= 5 ms, p99 <= 20 ms.
func BenchmarkP3ColdStart(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(8)}
	made := 0
	more := func() {
		// Functions are control-plane writes (Raft commits); create them
		// a batch at a time, 8 in parallel, and make sure the gateway
		// knows them before any is timed.
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := made; i < made+p3Batch; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				createFunction(b, hc, gw, synthetic(fnName("p3", i)))
			}(i)
		}
		wg.Wait()
		for i := made; i < made+p3Batch; i++ {
			dryRun(b, hc, gw, fnName("p3", i))
		}
		made += p3Batch
	}
	more()
	// Warm up the connection and the code paths on a function not timed.
	createFunction(b, hc, gw, synthetic("p3-warmup"))
	dryRun(b, hc, gw, "p3-warmup")
	for i := 0; i < 50; i++ {
		invoke(hc, gw, "p3-warmup", payload100)
	}

	var cold, warm []time.Duration
	var coldSum time.Duration
	i := 0
	for b.Loop() {
		if i == made {
			b.StopTimer()
			more()
			b.StartTimer()
		}
		fn := fnName("p3", i)
		i++
		r, err := invoke(hc, gw, fn, payload100)
		if err != nil || r.status != http.StatusOK || !r.cold {
			b.Fatalf("cold invoke of %s: %v %+v", fn, err, r)
		}
		cold = append(cold, r.lat)
		coldSum += r.lat
		r, err = invoke(hc, gw, fn, payload100)
		if err != nil || r.status != http.StatusOK || r.cold {
			b.Fatalf("warm invoke of %s: %v %+v", fn, err, r)
		}
		warm = append(warm, r.lat)
	}
	b.ReportMetric(float64(coldSum.Nanoseconds())/float64(len(cold)), "ns/op")
	p50, _ := reportLatency(b, "", cold)
	wp50, _ := reportLatency(b, "warm-", warm)
	b.ReportMetric(Ms(p50-wp50), "overhead-p50-ms")
	b.ReportMetric(float64(p50)/float64(wp50), "x-warm")
}
