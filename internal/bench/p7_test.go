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
	p7Idle     = 10000 // idle sandboxes held while the in-flight ones run
	p7InFlight = 1000  // concurrent in-flight invocations on top
	p7Spare    = 50    // extra sandboxes of the in-flight function (routing slack)
	p7Capacity = 3800  // per worker: 3 x 3800 >= 11,050 sandboxes
	p7Funcs    = p7Idle / p7InFlight
	p7HoldMs   = 2000 // handler time of a creating invocation: all of a round overlap
	p7RunMs    = 2000 // handler time of the in-flight invocations
	// p7Pace spaces the starts of a creating round (1,000 cold starts in
	// 0.5 s): a round started all at once makes the placement leader lose
	// its Raft lease on 2 cores (see BENCHMARKS.md), failing the round.
	p7Pace = 500 * time.Microsecond
	mib    = 1 << 20
)

// BenchmarkP7Scale is goal P7: one process holding 10,000 idle synthetic
// sandboxes while 1,000 invocations run at once on top of them, with an
// unlimited scaling rate and the account limit raised to 20,000. Eleven
// functions get about 1,000 sandboxes each (rounds of overlapping cold
// starts); then 1,000 clients invoke the eleventh for 2 s each (warm), so
// 10,000 sandboxes sit idle while 1,000 are busy. It reports the process
// RSS (VmRSS; its peak while the 1,000 run, sampled every 20 ms; the load
// generator's 1,000 client connections live in the same process and are
// counted too) beside the RSS of the same process before the cluster
// started. The scenario is one iteration: run it with -benchtime=1x, one
// process per trial, so that every baseline is a fresh process.
//
// Goal: RSS <= 1 GiB.
func BenchmarkP7Scale(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	before, _, err := RSS()
	if err != nil {
		b.Fatal(err)
	}
	c := upCluster(b, testcluster.Options{WorkerCapacity: p7Capacity}) // zero Rate: unlimited
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
		setupStart := time.Now()
		for f := 0; f <= p7Funcs; f++ {
			n := p7InFlight
			if f == p7Funcs {
				n += p7Spare
			}
			if failed, msg := burst(hc, gws, fnName("p7", f), n, p7HoldMs, p7Pace, nil); failed > 0 {
				b.Fatalf("creating round %d: %d of %d invocations failed; first: %s", f, failed, n, msg)
			}
		}
		setup := time.Since(setupStart)
		idle, _, _ := poolCounts(c)
		if idle < p7Idle+p7InFlight {
			b.Fatalf("only %d idle sandboxes after the rounds, want %d", idle, p7Idle+p7InFlight)
		}
		runtime.GC()
		idleRSS, _, _ := RSS()

		// 1,000 in flight on top, all warm.
		var peak, minIdle, maxBusy atomic.Int64
		minIdle.Store(1 << 40)
		sample := func() {
			rss, _, _ := RSS()
			if rss > peak.Load() {
				peak.Store(rss)
			}
			idle, busy, _ := poolCounts(c)
			if int64(busy) > maxBusy.Load() {
				maxBusy.Store(int64(busy))
				minIdle.Store(int64(idle)) // idle while the most were busy
			}
		}
		failed, msg := burst(hc, gws, fnName("p7", p7Funcs), p7InFlight, p7RunMs, 0, sample)
		if failed > 0 {
			b.Fatalf("%d of the %d in-flight invocations failed; first: %s", failed, p7InFlight, msg)
		}
		if maxBusy.Load() < p7InFlight {
			b.Fatalf("never saw %d invocations in flight at once (max %d)", p7InFlight, maxBusy.Load())
		}
		rss := peak.Load()
		b.ReportMetric(float64(minIdle.Load()), "idle")
		b.ReportMetric(float64(maxBusy.Load()), "busy")
		b.ReportMetric(float64(before)/mib, "before-MiB")
		b.ReportMetric(float64(idleRSS)/mib, "idle-MiB")
		b.ReportMetric(float64(rss)/mib, "peak-MiB")
		b.ReportMetric(float64(rss)/float64(before), "x-before")
		b.ReportMetric(float64(rss)/float64(1<<30), "of-goal")
		b.ReportMetric(float64(idleRSS-before)/float64(idle)/1024, "KiB/sandbox")
		b.ReportMetric(setup.Seconds(), "setup-s")
	}
}

// burst runs n concurrent invocations of fn holding their sandbox for
// holdMs, spread over the gateways, starting one every pace, and returns
// how many failed and the first failure. tick, if set, runs every 20 ms
// until they all end.
func burst(hc *http.Client, gws []string, fn string, n, holdMs int, pace time.Duration, tick func()) (int, string) {
	body := []byte(fmt.Sprintf(`{"duration_ms":%d}`, holdMs))
	var failed atomic.Int64
	var first sync.Once
	var msg string
	var wg sync.WaitGroup
	done := make(chan struct{})
	if tick != nil {
		go func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					tick()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := invoke(hc, gws[i%len(gws)], fn, body)
			if err != nil || r.status != http.StatusOK {
				failed.Add(1)
				first.Do(func() { msg = fmt.Sprintf("%v %d %s", err, r.status, r.msg) })
			}
		}(i)
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	wg.Wait()
	close(done)
	return int(failed.Load()), msg
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
