package bench

import (
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// BenchmarkOverload20x offers 20x what the account limit can serve (limit
// 20, 400 ms handlers: 50 invocations/s; offered 1,000/s, open loop, each
// request on its own goroutine) for 30 s, beside a baseline phase at 1x
// (50/s for 5 s) in the same run. Open loop, so that a throttle's latency
// is its own and not the queue of a closed loop (where it is just clients
// / throughput). Bounded work means:
// the leader's requests in flight stay under its pool size, the process's
// goroutines and heap stay near the 1x figures plus the clients, throttles
// are answered fast (p99 <= 10 ms), and every node stays healthy (no
// leader change, every worker leased, every gateway's /healthz 200).
func BenchmarkOverload20x(b *testing.B) {
	const limit = 20
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(1000), Timeout: 10 * time.Second}
	setAccountLimit(b, hc, gws[0], limit)
	fn := synthetic("ovl")
	fn.Coldstart.Duration = "400ms"
	createFunction(b, hc, gws[0], fn)
	for _, gw := range gws {
		dryRun(b, hc, gw, "ovl")
	}
	leader := c.Leader().ID
	phase := func(rate int, d time.Duration) overloadStats {
		var st overloadStats
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if l := c.Leader(); l != nil {
					st.leaderInFlight = max(st.leaderInFlight, l.Placement.InFlight())
				}
				st.goroutines = max(st.goroutines, runtime.NumGoroutine())
				runtime.ReadMemStats(&ms)
				st.heap = max(st.heap, ms.HeapInuse)
			}
		}()
		start := time.Now()
		interval := time.Second / time.Duration(rate)
		for i := 0; time.Since(start) < d; i++ {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				time.Sleep(wait) // pacing the open-loop arrivals
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := invoke(hc, gws[i%len(gws)], "ovl", payload100)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					st.failed++
				case r.status == http.StatusOK:
					st.ok++
				case r.status == http.StatusTooManyRequests:
					st.throttles = append(st.throttles, r.lat)
				default:
					st.failed++
				}
			}(i)
		}
		wg.Wait()
		close(stop)
		<-sampled
		return st
	}
	for b.Loop() {
		capacity := limit * 1000 / 400 // invocations/s the limit serves
		base := phase(capacity, 5*time.Second)
		over := phase(20*capacity, 30*time.Second)
		b.StopTimer()
		p99 := Percentile(over.throttles, 0.99)
		b.ReportMetric(Ms(p99), "throttle-p99-ms")
		b.ReportMetric(Ms(Percentile(over.throttles, 0.50)), "throttle-p50-ms")
		b.ReportMetric(float64(len(over.throttles))/30, "throttles/s")
		b.ReportMetric(float64(over.ok)/30, "ok/s")
		b.ReportMetric(float64(base.ok)/5, "base-ok/s")
		b.ReportMetric(float64(over.failed), "failed")
		b.ReportMetric(float64(over.leaderInFlight), "leader-inflight-max")
		b.ReportMetric(float64(base.goroutines), "base-goroutines")
		b.ReportMetric(float64(over.goroutines), "goroutines")
		b.ReportMetric(float64(base.heap)/(1<<20), "base-heap-MiB")
		b.ReportMetric(float64(over.heap)/(1<<20), "heap-MiB")
		if l := c.Leader(); l == nil || l.ID != leader {
			b.Errorf("leadership changed under overload (was %s)", leader)
		}
		if n := c.Leader().Placement.LeasedWorkers(); n != len(c.IDs(membership.RoleWorker)) {
			b.Errorf("%d of %d workers leased after the overload", n, len(c.IDs(membership.RoleWorker)))
		}
		for _, gw := range gws {
			resp, err := http.Get(gw + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				b.Errorf("gateway %s unhealthy after the overload: %v", gw, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
		if p99 > 10*time.Millisecond {
			b.Logf("throttle p99 %s above the 10 ms goal", p99)
		}
		b.StartTimer()
	}
}

type overloadStats struct {
	ok, failed     int
	throttles      []time.Duration
	leaderInFlight int
	goroutines     int
	heap           uint64
}
