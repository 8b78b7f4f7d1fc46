package bench

import (
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
)

// pollEvery is how often recovery is probed; it bounds the resolution.
const pollEvery = 2 * time.Millisecond

// BenchmarkP5LeaderKill is goal P5 (placement half): kill the Raft leader,
// then try a cold start (a function never invoked) every 2 ms until one
// succeeds. Each iteration is one trial; the killed node is restarted and
// caught up before the next. The baseline is the configured Raft election
// timeout (placement.Tuned, as in `coldstart up`). ns/op is the mean trial.
//
// Goal: median <= 1.5 s.
func BenchmarkP5LeaderKill(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(4), Timeout: 5 * time.Second}
	const maxTrials = 50
	for i := 0; i < maxTrials; i++ {
		createFunction(b, hc, gw, synthetic(fnName("p5", i)))
	}
	for i := 0; i < maxTrials; i++ {
		dryRun(b, hc, gw, fnName("p5", i))
	}
	var rec []time.Duration
	var sum time.Duration
	trial := 0
	for b.Loop() {
		if trial == maxTrials {
			b.Fatalf("more than %d trials: run with -benchtime=Nx", maxTrials)
		}
		b.StopTimer()
		waitHealthy(b, c)
		fn := fnName("p5", trial)
		trial++
		old := c.Leader()
		b.StartTimer()
		killed := time.Now()
		c.Kill(old.ID)
		var d time.Duration
		for {
			r, err := invoke(hc, gw, fn, payload100)
			if err == nil && r.status == http.StatusOK && r.cold {
				d = time.Since(killed)
				break
			}
			if time.Since(killed) > 10*time.Second {
				b.Fatalf("cold starts did not recover within 10 s of killing %s (last %v %+v)", old.ID, err, r)
			}
			time.Sleep(pollEvery)
		}
		b.StopTimer()
		rec = append(rec, d)
		sum += d
		c.Restart(old.ID)
		b.StartTimer()
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(rec)), "ns/op")
	reportTrials(b, rec, placement.Tuned.Election)
}

// BenchmarkP5WorkerKill is goal P5 (worker half): with 4 clients invoking
// a function whose warm sandboxes are spread over all 3 workers, kill one
// worker and measure (a) until the leader's ledger holds none of its
// sandboxes (capacity released) and (b) until every request sent
// afterwards succeeds on another worker (rerouted). The figure is the
// later of the two. Each iteration is one trial; the worker is restarted
// before the next. The baseline is membership.Fast's configured suspicion
// window (SuspicionMult x ProbeInterval), the floor of dead-node detection.
//
// Goal: median <= 2 s.
func BenchmarkP5WorkerKill(b *testing.B) {
	w := newWorkerTrials(b, "p5w")
	c := w.c
	var recov, released, rerouted []time.Duration
	var sum time.Duration
	lost := 0
	for b.Loop() {
		b.StopTimer()
		victim, load := w.next(b)
		b.StartTimer()
		killed := time.Now()
		c.Kill(victim)
		rel := w.waitReleased(b, victim, killed)
		b.StopTimer()
		// Keep the load up a little past the release so that a late
		// misroute would show.
		time.Sleep(300 * time.Millisecond)
		reqs := load.stop()
		rr, stuck := reroute(reqs, killed, victim)
		lost += stuck
		d := rel
		if rr > d {
			d = rr
		}
		recov, released, rerouted = append(recov, d), append(released, rel), append(rerouted, rr)
		sum += d
		c.Restart(victim)
		b.StartTimer()
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(recov)), "ns/op")
	// A dead worker's capacity comes back when its lease has certainly
	// expired: TTL + margin after its last renewal.
	reportTrials(b, recov, placement.DefaultLease.Expiry())
	b.ReportMetric(Ms(medianDur(released)), "release-ms")
	b.ReportMetric(Ms(medianDur(rerouted)), "reroute-ms")
	b.ReportMetric(float64(lost), "hung")
}

// BenchmarkP5WorkerPause: a worker with sandboxes, under load, is paused
// (every socket of it blocked: it makes no progress on the network and
// keeps its state). Its capacity must come back within the lease TTL +
// margin of its last renewal, and no invocation may have run on it after
// its lease expired; it is resumed after the release.
func BenchmarkP5WorkerPause(b *testing.B) {
	w := newWorkerTrials(b, "p5p")
	var released []time.Duration
	var sum time.Duration
	for b.Loop() {
		b.StopTimer()
		victim, load := w.next(b)
		b.StartTimer()
		paused := time.Now()
		w.c.Pause(victim)
		rel := w.waitReleased(b, victim, paused)
		b.StopTimer()
		load.stop()
		w.c.Resume(victim)
		released = append(released, rel)
		sum += rel
		b.StartTimer()
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(released)), "ns/op")
	reportTrials(b, released, placement.DefaultLease.Expiry())
}

// workerTrials is the setup the worker-fault trials share: a cluster shaped
// like `coldstart up`, one function, and the workers taken in turn.
type workerTrials struct {
	c       *testcluster.Cluster
	hc      *http.Client
	gws     []string
	fn      string
	workers []string
	trial   int
}

func newWorkerTrials(b *testing.B, fn string) *workerTrials {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	w := &workerTrials{c: c, gws: gatewayURLs(c), fn: fn, workers: c.IDs(membership.RoleWorker),
		hc: &http.Client{Transport: newTransport(16), Timeout: hangAfter}}
	createFunction(b, w.hc, w.gws[0], synthetic(fn))
	for _, gw := range w.gws {
		dryRun(b, w.hc, gw, fn)
	}
	return w
}

// next readies a trial: a healthy cluster, sandboxes on every worker
// (placement spreads new ones evenly), load running; it returns the
// victim, which holds sandboxes.
func (w *workerTrials) next(b *testing.B) (string, *load) {
	waitHealthy(b, w.c)
	prewarm(b, w.hc, w.gws, w.fn, 12, 100*time.Millisecond)
	victim := w.workers[w.trial%len(w.workers)]
	w.trial++
	if held(w.c, victim) == 0 {
		b.Fatalf("%s holds no sandbox before the fault", victim)
	}
	l := startLoad(w.hc, w.gws, w.fn, 4)
	time.Sleep(100 * time.Millisecond) // the load's warm-up span
	return victim, l
}

// waitReleased polls the leader's ledger until the victim holds nothing.
func (w *workerTrials) waitReleased(b *testing.B, victim string, since time.Time) time.Duration {
	for {
		if held(w.c, victim) == 0 {
			return time.Since(since)
		}
		if time.Since(since) > 10*time.Second {
			b.Fatalf("%s's sandboxes not released within 10 s", victim)
		}
		time.Sleep(pollEvery)
	}
}

// reportTrials reports the median, min and max trial and the median's
// ratio to base.
func reportTrials(b *testing.B, xs []time.Duration, base time.Duration) {
	m := medianDur(xs)
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	b.ReportMetric(Ms(m), "median-ms")
	b.ReportMetric(Ms(xs[0]), "min-ms")
	b.ReportMetric(Ms(xs[len(xs)-1]), "max-ms")
	b.ReportMetric(Ms(base), "base-ms")
	b.ReportMetric(float64(m)/float64(base), "x-base")
	b.ReportMetric(float64(len(xs)), "trials")
}

func medianDur(xs []time.Duration) time.Duration {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return time.Duration(Median(f))
}

// waitHealthy waits until all placement nodes run, one leads, every
// follower has applied the leader's log, and every worker is registered
// alive in the leader's ledger.
func waitHealthy(b *testing.B, c *testcluster.Cluster) {
	b.Helper()
	err := c.WaitFor(func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		last := l.Placement.Raft().LastIndex()
		for _, id := range c.IDs(membership.RolePlacement) {
			n := c.Node(id)
			if n == nil || n.Placement.Raft().AppliedIndex() < last {
				return false
			}
		}
		for _, id := range c.IDs(membership.RoleWorker) {
			if c.Node(id) == nil {
				return false
			}
		}
		return l.Placement.LeasedWorkers() == len(c.IDs(membership.RoleWorker))
	}, 15*time.Second)
	if err != nil {
		b.Fatalf("cluster not healthy between trials: %v", err)
	}
}

// held counts the sandboxes the leader's ledger places on worker.
func held(c *testcluster.Cluster, worker string) int {
	n := -1
	if l := c.Leader(); l != nil {
		n = 0
		l.Placement.Read(func(led *placement.Ledger) {
			for _, sb := range led.State().Sandboxes {
				if sb.Worker == worker {
					n++
				}
			}
		})
	}
	return n
}

// hangAfter is the load's client timeout in the worker drill: a request
// still unanswered then was lost with the killed worker.
const hangAfter = 5 * time.Second

type request struct {
	start, end time.Time
	ok, hung   bool
	worker     string
}

type load struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []request
}

// startLoad runs clients invoking fn in a loop until stop.
func startLoad(hc *http.Client, gws []string, fn string, clients int) *load {
	l := &load{done: make(chan struct{})}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func(i int) {
			defer l.wg.Done()
			for {
				select {
				case <-l.done:
					return
				default:
				}
				start := time.Now()
				r, err := invoke(hc, gws[i%len(gws)], fn, payload100)
				l.mu.Lock()
				var ne net.Error
				hung := errors.As(err, &ne) && ne.Timeout()
				l.reqs = append(l.reqs, request{start: start, end: time.Now(), ok: err == nil && r.status == http.StatusOK, hung: hung, worker: r.worker})
				l.mu.Unlock()
			}
		}(i)
	}
	return l
}

func (l *load) stop() []request {
	close(l.done)
	l.wg.Wait()
	return l.reqs
}

// reroute is how long after the kill requests kept failing: the end of the
// last failed request sent after the kill (0 if none failed); a success
// served by the victim after the kill counts as a failure. Requests that
// hung past hangAfter were in flight on the victim when it died (the
// gateway waits for them until the function timeout + 15 s); they are
// counted as lost, not as reroute time.
func reroute(reqs []request, killed time.Time, victim string) (time.Duration, int) {
	var d time.Duration
	lost := 0
	for _, r := range reqs {
		bad := !r.ok || (r.worker == victim && r.start.After(killed))
		if !bad {
			continue
		}
		if r.hung {
			lost++
			continue
		}
		if r.start.Before(killed) {
			continue // failed fast while the worker was going down
		}
		if e := r.end.Sub(killed); e > d {
			d = e
		}
	}
	return d, lost
}
