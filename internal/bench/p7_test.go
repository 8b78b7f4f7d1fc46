package bench

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

const (
	p7Idle     = 10000 // idle sandboxes held
	p7InFlight = 1000  // concurrent in-flight invocations on top
	p7Capacity = 3700  // per worker: 3 x 3700 >= 11,000 sandboxes
	p7Funcs    = p7Idle / p7InFlight
	p7HoldMs   = 1000 // handler time of a creating invocation: all overlap
	p7RunMs    = 3000 // handler time of the in-flight invocations
	mib        = 1 << 20
)

// BenchmarkP7Scale is goal P7: one process holding 10,000 idle synthetic
// sandboxes and running 1,000 invocations at once on top of them (1,000
// more sandboxes of another function, so 11,000 in all), with an unlimited
// scaling rate and the account limit raised to 20,000. It reports the
// process RSS (VmRSS, read while the 1,000 are in flight; the load
// generator's 1,000 client connections live in the same process and are
// counted too) beside the same process's RSS before the cluster started.
// The whole scenario is one iteration: run it with -benchtime=1x, one
// process per trial, so every baseline is a fresh process.
//
// Goal: RSS <= 1 GiB.
func BenchmarkP7Scale(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	before, _, err := RSS()
	if err != nil {
		b.Fatal(err)
	}
	c := upCluster(b, testcluster.Options{WorkerCapacity: p7Capacity})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p7InFlight), Timeout: 60 * time.Second}
	setAccountLimit(b, hc, gws[0], 2*p7Idle)
	for i := 0; i <= p7Funcs; i++ {
		createFunction(b, hc, gws[0], synthetic(fnName("p7", i)))
	}
	for i := 0; i <= p7Funcs; i++ {
		for _, gw := range gws {
			dryRun(b, hc, gw, fnName("p7", i))
		}
	}
	iter := 0
	for b.Loop() {
		if iter++; iter > 1 {
			b.Fatal("P7 is one scenario: run it with -benchtime=1x")
		}
		// 10 rounds of 1,000 overlapping cold starts: 10,000 sandboxes,
		// idle once their invocation ends.
		for f := 0; f < p7Funcs; f++ {
			if n := burst(hc, gws, fnName("p7", f), p7InFlight, p7HoldMs, nil); n > 0 {
				b.Fatalf("round %d: %d invocations failed", f, n)
			}
		}
		idle, busy, _ := poolCounts(c)
		if idle < p7Idle {
			b.Fatalf("only %d idle sandboxes after the rounds, want %d", idle, p7Idle)
		}
		idleRSS, _, _ := RSS()

		// 1,000 in flight on top; sample RSS until they end.
		var peak, atFull atomic.Int64
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Add(1)
		go func() {
			defer sampler.Done()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				rss, _, _ := RSS()
				if rss > peak.Load() {
					peak.Store(rss)
				}
				if atFull.Load() == 0 {
					if _, busy, inflight := poolCounts(c); busy >= p7InFlight && inflight >= p7InFlight {
						atFull.Store(rss)
					}
				}
			}
		}()
		var maxInFlight atomic.Int64
		failed := burst(hc, gws, fnName("p7", p7Funcs), p7InFlight, p7RunMs, func() {
			_, _, inflight := poolCounts(c)
			if int64(inflight) > maxInFlight.Load() {
				maxInFlight.Store(int64(inflight))
			}
		})
		close(stop)
		sampler.Wait()
		if failed > 0 {
			b.Fatalf("%d of the %d in-flight invocations failed", failed, p7InFlight)
		}
		if atFull.Load() == 0 {
			b.Fatalf("never saw %d invocations in flight at once (max %d)", p7InFlight, maxInFlight.Load())
		}
		idle, busy, _ = poolCounts(c)
		_ = busy
		rss := peak.Load()
		b.ReportMetric(float64(idle), "sandboxes")
		b.ReportMetric(float64(before)/mib, "before-MiB")
		b.ReportMetric(float64(idleRSS)/mib, "idle-MiB")
		b.ReportMetric(float64(atFull.Load())/mib, "inflight-MiB")
		b.ReportMetric(float64(rss)/mib, "peak-MiB")
		b.ReportMetric(float64(rss)/float64(before), "x-before")
		b.ReportMetric(float64(rss)/float64(1<<30), "of-goal")
		b.ReportMetric(float64(rss-before)/float64(p7Idle+p7InFlight)/1024, "KiB/sandbox")
	}
}

// burst runs n concurrent invocations of fn holding their sandbox for
// holdMs, spread over the gateways, and returns how many failed. tick, if
// set, runs every 20 ms meanwhile.
func burst(hc *http.Client, gws []string, fn string, n, holdMs int, tick func()) int {
	body := []byte(fmt.Sprintf(`{"duration_ms":%d}`, holdMs))
	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := invoke(hc, gws[i%len(gws)], fn, body)
			if err != nil || r.status != http.StatusOK {
				failed.Add(1)
				firstErr.Do(func() { fmt.Printf("p7 %s: first failure: %v status %d %s\n", fn, err, r.status, r.errTyp) })
			}
		}(i)
	}
	if tick != nil {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return int(failed.Load())
			case <-t.C:
				tick()
			}
		}
	}
	wg.Wait()
	return int(failed.Load())
}

// poolCounts sums every worker's idle and busy sandboxes and in-flight
// invocations.
func poolCounts(c *testcluster.Cluster) (idle, busy, inflight int) {
	for _, id := range c.IDs(membership.RoleWorker) {
		if n := c.Node(id); n != nil {
			s := n.Worker.Stats()
			idle, busy, inflight = idle+s.Idle, busy+s.Busy, inflight+s.InFlight
		}
	}
	return idle, busy, inflight
}
