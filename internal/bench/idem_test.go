package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// setIdempotency turns on fn's platform idempotency.
func setIdempotency(b *testing.B, hc *http.Client, gw, fn string, in api.IdempotencyInput) {
	b.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPut, gw+api.PathFunctionOptions+fn+"/idempotency", bytes.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("set idempotency of %s: %d %s", fn, resp.StatusCode, msg)
	}
}

// BenchmarkIdempotencyOverhead is goal P8's third figure: what platform
// idempotency adds to a warm synchronous invoke. Two synthetic 0 ms
// functions, one with idempotency on (key request-id: every call is a new
// key, so each pays the claim, SET NX PX, and the completion, SET PX with
// the response), one without, invoked by one keep-alive client through
// one gateway; beside them, the same run's bare `SET key v NX PX 60000`
// round trip with go-redis to the same redis-server the workers use. Each
// iteration does one of each, in rotating order, so machine drift hits all
// three alike. ns/op is the mean invoke with idempotency on. P8 has no
// numeric goal; added-x-set says how many bare SET round trips the
// overhead is worth (two is the floor of claim + complete).
func BenchmarkIdempotencyOverhead(b *testing.B) {
	rd := testcluster.StartRedis(b)
	c := upCluster(b, testcluster.Options{Rate: upRate, RedisURL: rd.URL()})
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(2)}
	createFunction(b, hc, gw, synthetic("idem-on"))
	createFunction(b, hc, gw, synthetic("idem-off"))
	setIdempotency(b, hc, gw, "idem-on", api.IdempotencyInput{Key: "request-id", TTLSeconds: 3600})
	dryRun(b, hc, gw, "idem-on")
	dryRun(b, hc, gw, "idem-off")
	rc := redis.NewClient(&redis.Options{Addr: rd.Addr})
	b.Cleanup(func() { rc.Close() })
	ctx := context.Background()

	var on, off, set []time.Duration
	var onSum time.Duration
	n := 0
	doOn := func(timed bool) {
		r, err := invoke(hc, gw, "idem-on", payload100)
		if err != nil || r.status != http.StatusOK || r.errTyp != "" {
			b.Fatalf("invoke with idempotency: %v %+v", err, r)
		}
		if timed {
			on = append(on, r.lat)
			onSum += r.lat
		}
	}
	doOff := func(timed bool) {
		r, err := invoke(hc, gw, "idem-off", payload100)
		if err != nil || r.status != http.StatusOK || r.errTyp != "" {
			b.Fatalf("invoke: %v %+v", err, r)
		}
		if timed {
			off = append(off, r.lat)
		}
	}
	doSet := func(timed bool) {
		n++
		t0 := time.Now()
		ok, err := rc.SetNX(ctx, "bench:idem:"+strconv.Itoa(n), payload100, 60*time.Second).Result()
		d := time.Since(t0)
		if err != nil || !ok {
			b.Fatalf("SET NX PX: %v %v", ok, err)
		}
		if timed {
			set = append(set, d)
		}
	}
	ops := []func(bool){doOn, doOff, doSet}
	// The first calls cold-start each function's only sandbox and open the
	// connections; the rest are warm.
	for i := 0; i < 200; i++ {
		for _, op := range ops {
			op(false)
		}
	}
	it := 0
	for b.Loop() {
		for k := range ops {
			ops[(it+k)%len(ops)](true)
		}
		it++
	}
	b.ReportMetric(float64(onSum.Nanoseconds())/float64(len(on)), "ns/op")
	onP50, onP99 := reportLatency(b, "on-", on)
	offP50, offP99 := reportLatency(b, "off-", off)
	setP50, _ := reportLatency(b, "set-", set)
	b.ReportMetric(Ms(onP50-offP50), "added-p50-ms")
	b.ReportMetric(Ms(onP99-offP99), "added-p99-ms")
	b.ReportMetric(float64(onP50-offP50)/float64(setP50), "added-x-set")
	b.ReportMetric(float64(onP50)/float64(offP50), "on-x-off")
}
