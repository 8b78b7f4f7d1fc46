package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// postEvent sends one Event invocation and returns its status and the
// request id the gateway answered with.
func postEvent(hc *http.Client, gw, fn string, body []byte) (int, string, error) {
	req, _ := http.NewRequest(http.MethodPost, invokeURL(gw, fn), bytes.NewReader(body))
	req.Header.Set(api.HeaderInvocationType, "Event")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(api.HeaderRequestID), nil
}

// eventsBacklog is how many events CS_EVENTS holds: a work-queue stream
// drops an event when its dispatcher acknowledges it, so 0 means every
// accepted event was dispatched.
func eventsBacklog(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// waitDrained waits until CS_EVENTS is empty and returns when it was.
func waitDrained(b *testing.B, js jetstream.JetStream, timeout time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := eventsBacklog(ctx, js, gateway.EventsStream)
		cancel()
		if err == nil && n == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d events still queued after %s (%v)", n, timeout, err)
		}
		time.Sleep(2 * time.Millisecond) // polling the stream's state
	}
}

// eventMsg is a message shaped like the one a gateway stores for an Event
// invocation (the same payload and headers, a fresh Nats-Msg-Id), so the
// baseline stores the same bytes.
func eventMsg(subject, id string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = payload100
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set("Cs-Req", id)
	m.Header.Set("Cs-Acct", "000000000000")
	m.Header.Set("Cs-Fn", "p8")
	m.Header.Set("Cs-Qual", "")
	m.Header.Set("Cs-Trigger", api.TriggerEvent)
	m.Header.Set("Cs-Enq", strconv.FormatInt(time.Now().UnixNano(), 10))
	return m
}

// benchID is a request-id-shaped (36 characters) unique id.
func benchID(run, i uint64) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", run, i)
}

// BenchmarkP8AcceptEvents is goal P8's first half: Event invocations
// accepted per second (202s: each event acknowledged by JetStream before
// the answer) by 64 keep-alive clients over both gateways, against the
// same run's bare JetStream publishes of the same message, acknowledged,
// by 64 publishers on two gateway-role connections (one per gateway, as
// the gateways' own) to a file stream with a duplicate window on the same
// NATS server. The baseline stream is CS_DLQ, the only stream a gateway's
// credentials may publish to that nothing consumes; CS_EVENTS itself would
// feed the baseline's messages to the dispatchers.
//
// The dispatchers run during the accept phase (they are part of what an
// accepting cluster does), and each accept phase is followed, untimed, by
// a wait until CS_EVENTS is empty again, so every phase starts from an
// empty queue. That wait gives a second figure: how fast the dispatchers
// drain a burst (burst-dispatch/s, from the phase's start until the queue
// is empty). Each iteration runs one phase of each kind, in alternating
// order. ns/op is per accepted event. P8 has no numeric goal.
func BenchmarkP8AcceptEvents(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(p2Clients)}
	createFunction(b, hc, gws[0], synthetic("p8"))
	for _, gw := range gws {
		dryRun(b, hc, gw, "p8")
	}
	// The dispatchers of both gateways together run up to 64 events at
	// once: enough warm sandboxes that none of them waits on a cold start.
	prewarm(b, hc, gws, "p8", 2*gateway.DefaultDispatchers, 300*time.Millisecond)

	var js []jetstream.JetStream
	for i := range gws {
		j, err := jetstream.New(c.Client(natsutil.RoleGateway, "bench"+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		js = append(js, j)
	}
	var ids atomic.Uint64
	run := uint64(time.Now().UnixNano())
	eventOp := func(cl int) error {
		st, _, err := postEvent(hc, gws[cl%len(gws)], "p8", payload100)
		if err == nil && st != http.StatusAccepted {
			err = fmt.Errorf("event invoke: status %d", st)
		}
		return err
	}
	publishOp := func(cl int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := js[cl%len(js)].PublishMsg(ctx, eventMsg("cs.dlq.bench.p8", benchID(run, ids.Add(1))))
		return err
	}
	ops := []func(int) error{eventOp, publishOp}
	// Open every connection and warm both paths before timing.
	for _, op := range ops {
		if _, err := runPhase(op); err != nil {
			b.Fatal(err)
		}
	}
	waitDrained(b, js[0], 30*time.Second)

	var stats [2]phaseStats
	var burst phaseStats // from an accept phase's start until the queue is empty
	it := 0
	for b.Loop() {
		for k := 0; k < len(ops); k++ {
			i := (it + k) % len(ops)
			start := time.Now()
			ps, err := runPhase(ops[i])
			if err != nil {
				b.Fatal(err)
			}
			stats[i].add(ps)
			if i == 0 {
				b.StopTimer()
				end := waitDrained(b, js[0], 60*time.Second)
				burst.add(phaseStats{n: ps.n, wall: end.Sub(start)})
				b.StartTimer()
			}
		}
		it++
	}
	ev, pub := stats[0], stats[1]
	b.ReportMetric(ev.nsPerOp(), "ns/op")
	b.ReportMetric(ev.rate(), "accepted/s")
	b.ReportMetric(pub.rate(), "js-pub/s")
	b.ReportMetric(ev.rate()/pub.rate(), "of-js")
	b.ReportMetric(burst.rate(), "burst-dispatch/s")
	b.ReportMetric(ev.cores(), "cores")
	b.ReportMetric(pub.cores(), "js-cores")
	b.ReportMetric(ev.cpuPerOp(), "cpu-us/event")
	b.ReportMetric(pub.cpuPerOp(), "js-cpu-us/pub")
	// What the dispatchers leave in the attempt-state bucket: entries
	// (delete markers included) after every event ran once and succeeded.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := eventsBacklog(ctx, js[0], "KV_"+gateway.AsyncStateBucket); err == nil {
		b.ReportMetric(float64(n), "state-msgs")
	}
}

// p8Rate and p8Window are P8's offered load: 1,000 events/s for 3 s.
const (
	p8Rate   = 1000
	p8Window = 3 * time.Second
)

// openLoop calls op at rate per second for d, each call on its own
// goroutine, so a slow call never delays the next arrival. It returns the
// achieved offered rate.
func openLoop(rate int, d time.Duration, op func(i int)) float64 {
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	n := 0
	for ; time.Since(start) < d; n++ {
		if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
			time.Sleep(wait) // pacing the open-loop arrivals
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			op(i)
		}(n)
	}
	offered := float64(n) / time.Since(start).Seconds()
	wg.Wait()
	return offered
}

// BenchmarkP8DispatchLag is goal P8's second half: Event invocations of a
// synthetic 0 ms function offered open loop at 1,000/s for 3 s over both
// gateways, and for each event the lag from its acceptance (the moment
// the client has the 202) to the start of its handler (the worker's
// record, start_ns; one process, one clock). The gateway's acceptance
// (JetStream's ack) lies between the client's send and its receipt of the
// 202, so lag- (from the 202) is the lower bound, and a handler may even
// start before the 202 arrives (ran-before-202, counted as a negative
// lag); lag-send- (from the send) is the upper bound. The sustained dispatch rate
// is the events whose handler ran over the time from the first handler
// start to the last: 1,000/s if the dispatchers keep up, less if a
// backlog builds. The same run's baseline is the synchronous invoke of
// the same function at the same offered rate and for as long: its round
// trip, which already holds a handler start, is what the lag would be if
// the event ran inline. Each iteration runs one phase of each, in
// alternating order; ns/op is one iteration. P8 has no numeric goal.
func BenchmarkP8DispatchLag(b *testing.B) {
	c := upCluster(b, testcluster.Options{Rate: upRate})
	gws := gatewayURLs(c)
	hc := &http.Client{Transport: newTransport(256), Timeout: 30 * time.Second}
	createFunction(b, hc, gws[0], synthetic("p8"))
	for _, gw := range gws {
		dryRun(b, hc, gw, "p8")
	}
	prewarm(b, hc, gws, "p8", 2*gateway.DefaultDispatchers, 300*time.Millisecond)
	js, err := jetstream.New(c.Client(natsutil.RoleGateway, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	rec := c.Records()
	// Warm the async path: dispatchers, consumer, connections.
	openLoop(p8Rate, 500*time.Millisecond, func(i int) { postEvent(hc, gws[i%len(gws)], "p8", payload100) })
	waitDrained(b, js, 30*time.Second)

	var lags, fromSend, accept, syncLat []time.Duration
	var offeredEv, offeredSync, rates []float64
	var failed, lost atomic.Int64
	eventPhase := func() {
		type sent struct{ at, acked time.Time }
		var mu sync.Mutex
		byID := map[string]sent{}
		offeredEv = append(offeredEv, openLoop(p8Rate, p8Window, func(i int) {
			t0 := time.Now()
			st, id, err := postEvent(hc, gws[i%len(gws)], "p8", payload100)
			t1 := time.Now()
			if err != nil || st != http.StatusAccepted || id == "" {
				failed.Add(1)
				return
			}
			mu.Lock()
			byID[id] = sent{t0, t1}
			mu.Unlock()
		}))
		waitDrained(b, js, 60*time.Second)
		// Records are published in batches: wait until every event's is in.
		var first, last int64
		deadline := time.Now().Add(10 * time.Second)
		for {
			found := 0
			first, last = 0, 0
			var ls, fs, as []time.Duration
			for _, r := range rec.All() {
				s, ok := byID[r.RequestID]
				if !ok || r.Trigger != api.TriggerEvent {
					continue
				}
				found++
				ls = append(ls, time.Duration(r.StartNs-s.acked.UnixNano()))
				fs = append(fs, time.Duration(r.StartNs-s.at.UnixNano()))
				as = append(as, s.acked.Sub(s.at))
				if first == 0 || r.StartNs < first {
					first = r.StartNs
				}
				last = max(last, r.StartNs)
			}
			if found == len(byID) || time.Now().After(deadline) {
				lost.Add(int64(len(byID) - found))
				lags, fromSend, accept = append(lags, ls...), append(fromSend, fs...), append(accept, as...)
				if last > first {
					rates = append(rates, float64(found-1)/time.Duration(last-first).Seconds())
				}
				return
			}
			time.Sleep(20 * time.Millisecond) // the workers' record batches
		}
	}
	syncPhase := func() {
		var mu sync.Mutex
		offeredSync = append(offeredSync, openLoop(p8Rate, p8Window, func(i int) {
			r, err := invoke(hc, gws[i%len(gws)], "p8", payload100)
			if err != nil || r.status != http.StatusOK {
				failed.Add(1)
				return
			}
			mu.Lock()
			syncLat = append(syncLat, r.lat)
			mu.Unlock()
		}))
	}
	it := 0
	for b.Loop() {
		if it%2 == 0 {
			eventPhase()
			syncPhase()
		} else {
			syncPhase()
			eventPhase()
		}
		it++
	}
	early := 0
	for _, l := range lags {
		if l < 0 {
			early++
		}
	}
	lp50, _ := reportLatency(b, "lag-", lags)
	reportLatency(b, "lag-send-", fromSend)
	b.ReportMetric(float64(early)/float64(len(lags)), "ran-before-202")
	reportLatency(b, "accept-", accept)
	sp50, _ := reportLatency(b, "sync-", syncLat)
	b.ReportMetric(float64(lp50)/float64(sp50), "lag-x-sync")
	b.ReportMetric(Median(rates), "dispatch/s")
	b.ReportMetric(Median(offeredEv), "offered/s")
	b.ReportMetric(Median(offeredSync), "sync-offered/s")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(float64(lost.Load()), "no-record")
}
