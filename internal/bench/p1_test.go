package bench

import (
	"net/http"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// BenchmarkP1WarmInvoke is goal P1: a warm synchronous invoke of a
// synthetic 0 ms handler by one keep-alive client, against the same run's
// bare HTTP round trip (net/http echo of the same 100 B body, same client
// transport). Each iteration does one of each, in alternating order, so
// machine drift hits both alike. ns/op is the mean warm invoke.
//
// Goal: p50 <= 0.5 ms, p99 <= 2 ms, p50 <= 4x the baseline p50.
func BenchmarkP1WarmInvoke(b *testing.B) { benchWarmInvoke(b, 0, synthetic("p1")) }

// BenchmarkP1WarmInvokeSpare is a diagnostic beside P1, not a goal: the
// same loop with spare idle sandboxes of the function on every worker, so
// the worker serving a call never runs out of idle sandboxes and never
// drops and re-creates its warm-subject subscription around the call (as it
// does with one sandbox). The difference to P1 is the cost of that churn.
func BenchmarkP1WarmInvokeSpare(b *testing.B) { benchWarmInvoke(b, 6, synthetic("p1")) }

// BenchmarkP1WarmInvokeProcess is P1's loop against a function with code
// (testdata/procfn, an aws-lambda-go echo on provided.al2023) instead of
// the synthetic one, beside the same HTTP echo baseline: what a real
// handler's sandbox, the Runtime API exchange with its process, adds to a
// warm invoke. P1's goals are the synthetic function's; this row shows
// how far a process function is from them.
func BenchmarkP1WarmInvokeProcess(b *testing.B) { benchWarmInvoke(b, 0, processFn(b, "p1")) }

func benchWarmInvoke(b *testing.B, spare int, fn api.CreateFunctionInput) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(spare + 1)}
	createFunction(b, hc, gw, fn)
	dryRun(b, hc, gw, "p1")
	if spare > 0 {
		prewarm(b, hc, []string{gw}, "p1", spare, 100*time.Millisecond)
	}
	base := echoServer(b).URL + "/echo"
	// Without spares the first call cold-starts the function's only
	// sandbox and the rest are warm, as for a client calling one function
	// in a loop.
	for i := 0; i < 200; i++ {
		if r, err := invoke(hc, gw, "p1", payload100); err != nil || r.status != http.StatusOK {
			b.Fatalf("warm-up invoke: %v %+v", err, r)
		}
		if _, err := post(hc, base, payload100); err != nil {
			b.Fatal(err)
		}
	}
	var warm, http1, dur []time.Duration
	var warmSum time.Duration
	cold := 0
	i := 0
	for b.Loop() {
		doWarm := func() {
			r, err := invoke(hc, gw, "p1", payload100)
			if err != nil || r.status != http.StatusOK {
				b.Fatalf("invoke: %v %+v", err, r)
			}
			if r.cold {
				cold++
			}
			warm = append(warm, r.lat)
			warmSum += r.lat
			dur = append(dur, time.Duration(r.durMs*float64(time.Millisecond)))
		}
		doBase := func() {
			t0 := time.Now()
			if _, err := post(hc, base, payload100); err != nil {
				b.Fatal(err)
			}
			http1 = append(http1, time.Since(t0))
		}
		if i%2 == 0 {
			doWarm()
			doBase()
		} else {
			doBase()
			doWarm()
		}
		i++
	}
	b.ReportMetric(float64(warmSum.Nanoseconds())/float64(len(warm)), "ns/op")
	p50, _ := reportLatency(b, "", warm)
	bp50, _ := reportLatency(b, "http-", http1)
	b.ReportMetric(float64(p50)/float64(bp50), "x-http")
	// The handler's run as the worker timed it (for a process, the
	// Runtime API exchange with it), inside the round trip above.
	b.ReportMetric(Ms(Percentile(dur, 0.50)), "fn-p50-ms")
	b.ReportMetric(float64(cold), "cold")
}
