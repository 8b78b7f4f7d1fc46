package bench

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

const (
	p2Clients   = 64
	p2PerClient = 25 // operations per client per phase
)

// phaseStats accumulates one kind of phase: operations, wall time, and
// this process's CPU time (cores used = CPU / wall tells CPU-bound, near 2,
// from waiting or from other processes taking the cores).
type phaseStats struct {
	n         int
	wall, cpu time.Duration
}

func (p phaseStats) rate() float64     { return float64(p.n) / p.wall.Seconds() }
func (p phaseStats) cpuPerOp() float64 { return float64(p.cpu.Microseconds()) / float64(p.n) }
func (p phaseStats) cores() float64    { return float64(p.cpu) / float64(p.wall) }
func (p phaseStats) nsPerOp() float64  { return float64(p.wall.Nanoseconds()) / float64(p.n) }
func (p *phaseStats) add(q phaseStats) { p.n, p.wall, p.cpu = p.n+q.n, p.wall+q.wall, p.cpu+q.cpu }

// runPhase runs op p2PerClient times on each of p2Clients goroutines.
func runPhase(op func(client int) error) (phaseStats, error) {
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start, cpu0 := time.Now(), CPUTime()
	for cl := 0; cl < p2Clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			for i := 0; i < p2PerClient; i++ {
				if err := op(cl); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}(cl)
	}
	wg.Wait()
	ps := phaseStats{n: p2Clients * p2PerClient, wall: time.Since(start), cpu: CPUTime() - cpu0}
	return ps, firstErr
}

// BenchmarkP2WarmThroughput is goal P2: warm synchronous invocations/s of
// 64 keep-alive clients (spread over both gateways) with limits enforced
// (default account limit 1000, `coldstart up`'s scaling rate), against the
// same run's HTTP-only ceiling: the same 64 clients and transport posting
// the same 100 B body to a bare net/http echo server. A third phase
// measures the other physical floor of the invoke path, a bare NATS
// request-reply of the same body through the cluster's own NATS server
// (64 requesters on one connection, as a gateway; one responder
// connection, as a worker). Each iteration runs one phase of each kind, in
// rotating order. ns/op is per warm invocation.
//
// Goal: >= 10,000 invocations/s and >= 50% of the HTTP-only ceiling.
func BenchmarkP2WarmThroughput(b *testing.B) { benchWarmThroughput(b, synthetic("p2")) }

// BenchmarkP2WarmThroughputProcess is P2 against a function with code
// (testdata/procfn, an aws-lambda-go echo on provided.al2023): 192 warm
// process sandboxes, each invocation a Runtime API exchange with one, beside
// the same HTTP and NATS baselines. P2's goals are the synthetic
// function's; this row shows how far a process function is from them.
func BenchmarkP2WarmThroughputProcess(b *testing.B) { benchWarmThroughput(b, processFn(b, "p2")) }

func benchWarmThroughput(b *testing.B, fn api.CreateFunctionInput) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p2Clients)}
	createFunction(b, hc, gws[0], fn)
	for _, gw := range gws {
		dryRun(b, hc, gw, "p2")
	}
	// Three warm sandboxes per client: a worker whose idle sandboxes run
	// out answers busy and the gateway tries another.
	prewarm(b, hc, gws, "p2", 3*p2Clients, 300*time.Millisecond)
	base := echoServer(b).URL + "/echo"
	requester, responder := natsPair(b, c)

	var cold atomic.Int64
	invokeOp := func(cl int) error {
		resp, err := post(hc, invokeURL(gws[cl%len(gws)], "p2"), payload100)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("invoke: status %d", resp.StatusCode)
		}
		if resp.Header.Get(api.HeaderCold) == "true" {
			cold.Add(1)
		}
		return nil
	}
	httpOp := func(int) error {
		resp, err := post(hc, base, payload100)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("echo: status %d", resp.StatusCode)
		}
		return err
	}
	natsOp := func(int) error {
		_, err := requester.Request(echoSubject, payload100, 5*time.Second)
		return err
	}
	ops := []func(int) error{invokeOp, httpOp, natsOp}
	var stats [3]phaseStats
	// Open every keep-alive connection before timing.
	for _, op := range ops {
		if _, err := runPhase(op); err != nil {
			b.Fatal(err)
		}
	}
	cold.Store(0)

	it := 0
	for b.Loop() {
		for k := 0; k < len(ops); k++ {
			i := (it + k) % len(ops)
			ps, err := runPhase(ops[i])
			if err != nil {
				b.Fatal(err)
			}
			stats[i].add(ps)
		}
		it++
	}
	responder.Unsubscribe()
	inv, ht, nt := stats[0], stats[1], stats[2]
	b.ReportMetric(inv.nsPerOp(), "ns/op")
	b.ReportMetric(inv.rate(), "inv/s")
	b.ReportMetric(ht.rate(), "http-req/s")
	b.ReportMetric(nt.rate(), "nats-req/s")
	b.ReportMetric(inv.rate()/ht.rate(), "of-http")
	b.ReportMetric(float64(cold.Load()), "cold")
	b.ReportMetric(inv.cores(), "cores")
	b.ReportMetric(ht.cores(), "http-cores")
	// CPU per operation is steadier than rates when other processes take
	// a varying share of the 2 cores. floor-of-http is the best of-http an
	// invoke path made of one HTTP exchange plus one NATS request-reply
	// could reach on CPU alone.
	b.ReportMetric(inv.cpuPerOp(), "cpu-us/inv")
	b.ReportMetric(ht.cpuPerOp(), "http-cpu-us/req")
	b.ReportMetric(nt.cpuPerOp(), "nats-cpu-us/req")
	b.ReportMetric(ht.cpuPerOp()/inv.cpuPerOp(), "cpu-of-http")
	b.ReportMetric(ht.cpuPerOp()/(ht.cpuPerOp()+nt.cpuPerOp()), "floor-of-http")
}

// echoSubject is a warm-invoke subject no function uses: the requester
// and the responder connect as a gateway and a worker, with those roles'
// permissions, as on the invoke path.
const echoSubject = "cs.warm.bench.echo.LATEST"

// natsPair connects a requester and a responder that echoes echoSubject.
func natsPair(b *testing.B, c *testcluster.Cluster) (*nats.Conn, *nats.Subscription) {
	b.Helper()
	req := c.Client(natsutil.RoleGateway, "bench")
	rsp := c.Client(natsutil.RoleWorker, "bench")
	sub, err := rsp.Subscribe(echoSubject, func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := rsp.Flush(); err != nil {
		b.Fatal(err)
	}
	if _, err := req.Request(echoSubject, nil, time.Second); err != nil {
		b.Fatal(errors.Join(errors.New("nats echo"), err))
	}
	return req, sub
}

// fnName numbers fresh functions.
func fnName(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
