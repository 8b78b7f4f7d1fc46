package testcluster_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/wire"
)

// buildPayments builds examples/payments into a provided.al2023 zip.
func buildPayments(t *testing.T) []byte {
	return testcluster.BuildGoHandler(t, "../../examples/payments", "")
}

// paymentsRun is one batch of orders sent to one function.
type paymentsRun struct {
	fn      string
	orders  map[string]string // request id -> order id
	charges map[string]int    // order id -> entries in the ledger
	report  client.RetriesReport
}

// TestPaymentsUnderPlatformFaults: the examples/payments handler charges a
// ledger in Redis. Under each platform fault that loses a result, the
// naive build charges some orders twice, the build wrapped in
// idempotency.WrapBytes (key order_id) charges each order once, and the
// retries report names exactly the requests whose handler ran more than
// once, which the ledger confirms. The naive build with the platform's
// idempotency on (key json:order_id) charges once too.
func TestPaymentsUnderPlatformFaults(t *testing.T) {
	rd := testcluster.StartRedis(t)
	// Built before the cluster starts: a compile takes both cores, and a
	// starved cluster loses leases and leaders for reasons of its own.
	code := buildPayments(t)
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2, RedisURL: rd.URL(), TimeScale: asyncScale})
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl, err := client.New(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr})
	t.Cleanup(func() { rdb.Close() })
	for _, fn := range []string{"payments-naive", "payments-wrapped"} {
		mode := strings.TrimPrefix(fn, "payments-")
		// A 2 s timeout bounds how long a dispatcher waits for a dropped
		// response (the timeout plus the gateway's margin) before it
		// retries.
		if _, err := cl.CreateFunction(ctx, api.CreateFunctionInput{FunctionName: fn, Runtime: "provided.al2023", Handler: "bootstrap", Timeout: 2, MemorySize: 128,
			Code: &api.FunctionCode{ZipFile: code}, Environment: &api.Environment{Variables: map[string]string{"REDIS_ADDR": rd.Addr, "PAYMENTS_MODE": mode}}}); err != nil {
			t.Fatalf("create %s: %v", fn, err)
		}
	}
	const n = 30

	// send queues n orders (ids prefix-0..n-1) to fn as Event invocations.
	send := func(fn, prefix string) *paymentsRun {
		t.Helper()
		run := &paymentsRun{fn: fn, orders: map[string]string{}}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%02d", prefix, i)
			res, err := cl.Invoke(ctx, fn, []byte(`{"order_id":"`+id+`","account":"acme","amount":10}`), client.InvokeOptions{InvocationType: client.InvocationEvent})
			if err != nil || res.StatusCode != 202 || res.RequestID == "" {
				t.Fatalf("Event invoke of %s: %+v %v", fn, res, err)
			}
			run.orders[res.RequestID] = id
		}
		return run
	}
	// settle waits until every request of the runs is settled (succeeded or
	// dead-lettered) and every duplicate delivery has its record, then
	// reads the ledger.
	settle := func(runs ...*paymentsRun) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for _, run := range runs {
			for {
				rep, err := cl.RetriesReport(ctx, run.fn, "all")
				if err != nil {
					t.Fatal(err)
				}
				run.report = only(rep, run.orders)
				if settled(run.report, len(run.orders)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: not settled within 60 s: %+v", run.fn, run.report.Summary)
				}
				<-tick.C
			}
			entries, err := rdb.LRange(ctx, run.fn+":charges", 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			run.charges = map[string]int{}
			for _, id := range entries {
				for _, o := range run.orders {
					if id == o {
						run.charges[id]++
					}
				}
			}
		}
	}

	for _, kind := range []string{wire.FaultCrashAfterHandler, wire.FaultDropResponse, wire.FaultTimeoutAfterEffect, wire.FaultDuplicateDelivery} {
		for _, fn := range []string{"payments-naive", "payments-wrapped"} {
			if _, err := cl.InjectFault(ctx, fn, api.FaultInput{Kind: kind, Rate: 0.3, Seed: 7}); err != nil {
				t.Fatal(err)
			}
		}
		naive, wrapped := send("payments-naive", kind), send("payments-wrapped", kind)
		settle(naive, wrapped)
		for _, fn := range []string{"payments-naive", "payments-wrapped"} {
			if err := cl.ClearFault(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}

		// The naive handler: each completed run is a charge, so the ledger
		// and the report agree request by request. A fenced run (its
		// worker lost its lease mid-invocation, which a stalled machine
		// can cause) was cut at a point nobody knows: it may or may not
		// have charged.
		twice := 0
		for req, order := range naive.orders {
			h := history(naive.report, req)
			if c, f := naive.charges[order], fencedRuns(h); c > h.Runs || c < h.Runs-f {
				t.Errorf("%s naive: order %s charged %d times, its handler ran %d times, %d of them fenced (%v)", kind, order, c, h.Runs, f, h.Outcomes)
			}
			if naive.charges[order] > 1 {
				twice++
			}
		}
		reported := sortedIDs(naive.report.RanMoreThanOnceIDs())
		if got, want := unfenced(naive.report, reported), chargedTwice(naive); !subset(want, reported) || !subset(got, want) {
			t.Errorf("%s naive: the report names %v as run more than once, the ledger %v", kind, reported, want)
		}
		if twice == 0 {
			t.Errorf("%s naive: no order charged twice (%+v)", kind, naive.report.Summary)
		}
		// The wrapped handler: charged once per settled order, whatever the
		// platform re-ran (the report still sees those runs: the wrapper's
		// replays happen inside the handler).
		for req, order := range wrapped.orders {
			h := history(wrapped.report, req)
			if wrapped.charges[order] != 1 {
				t.Errorf("%s wrapped: order %s charged %d times (%s, %v)", kind, order, wrapped.charges[order], h.State, h.Outcomes)
			}
		}
		t.Logf("%-21s naive: %2d of %d orders charged twice or more, report %s; wrapped: every order charged once, %d of its requests re-run by the platform, report %s",
			kind, twice, n, summaryText(naive.report.Summary), wrapped.report.Summary.RanMoreThanOnce, summaryText(wrapped.report.Summary))
	}

	// The naive handler again, with the platform's idempotency keyed on
	// order_id: a retry after crash-after-handler is answered from Redis
	// without running the handler.
	if _, err := cl.SetIdempotency(ctx, "payments-naive", api.IdempotencyInput{Key: "json:order_id", TTLSeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.InjectFault(ctx, "payments-naive", api.FaultInput{Kind: wire.FaultCrashAfterHandler, Rate: 0.3, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	guarded := send("payments-naive", "platform-idempotency")
	settle(guarded)
	for req, order := range guarded.orders {
		if h := history(guarded.report, req); guarded.charges[order] != 1 || h.Runs != 1 {
			t.Errorf("platform idempotency: order %s charged %d times, ran %d times (%s, %v)", order, guarded.charges[order], h.Runs, h.State, h.Outcomes)
		}
	}
	s := guarded.report.Summary
	if s.RanMoreThanOnce != 0 || s.ReplayedDuplicates == 0 || s.Faults[wire.FaultCrashAfterHandler] == 0 {
		t.Errorf("platform idempotency: %+v", s)
	}
	t.Logf("platform idempotency   naive: every order charged once, report %s", summaryText(s))
}

// only keeps the requests of orders (and recounts the summary).
func only(rep client.RetriesReport, orders map[string]string) client.RetriesReport {
	var recs []client.RequestHistory
	for _, h := range rep.Requests {
		if _, ok := orders[h.RequestID]; ok {
			recs = append(recs, h)
		}
	}
	out := client.RetriesReport{Requests: recs, Summary: client.RetriesSummary{Faults: map[string]int{}}}
	s := &out.Summary
	for _, h := range recs {
		s.Requests++
		switch h.State {
		case client.StateSucceeded:
			s.Succeeded++
		case client.StateDeadLettered:
			s.DeadLettered++
		case client.StateInFlight:
			s.InFlight++
		case client.StateFailed:
			s.Failed++
		}
		if h.RanMoreThanOnce {
			s.RanMoreThanOnce++
		}
		s.ReplayedDuplicates += h.Replayed
		for k, v := range h.Faults {
			s.Faults[k] += v
		}
	}
	return out
}

// settled: every request succeeded or was dead-lettered, and every
// duplicate-delivery fault has the duplicate's record too (its charge may
// land after the original's success).
func settled(rep client.RetriesReport, want int) bool {
	if rep.Summary.Requests != want || rep.Summary.Succeeded+rep.Summary.DeadLettered != want {
		return false
	}
	for _, h := range rep.Requests {
		dups := 0
		for _, o := range h.Outcomes {
			if strings.Contains(o, "(duplicate)") {
				dups++
			}
		}
		if dups < h.Faults[wire.FaultDuplicateDelivery] {
			return false
		}
	}
	return true
}

func history(rep client.RetriesReport, req string) client.RequestHistory {
	for _, h := range rep.Requests {
		if h.RequestID == req {
			return h
		}
	}
	return client.RequestHistory{}
}

// chargedTwice are the request ids whose order the ledger holds more than
// once.
func chargedTwice(run *paymentsRun) []string {
	var ids []string
	for req, order := range run.orders {
		if run.charges[order] > 1 {
			ids = append(ids, req)
		}
	}
	return sortedIDs(ids)
}

// fencedRuns counts the runs of a request cut by a fence.
func fencedRuns(h client.RequestHistory) int {
	n := 0
	for _, o := range h.Outcomes {
		if strings.HasPrefix(o, api.OutcomeFenced) {
			n++
		}
	}
	return n
}

// unfenced keeps the ids whose every run completed: for those, "ran more
// than once" must mean "charged more than once".
func unfenced(rep client.RetriesReport, ids []string) []string {
	var out []string
	for _, id := range ids {
		if fencedRuns(history(rep, id)) == 0 {
			out = append(out, id)
		}
	}
	return out
}

func subset(a, b []string) bool {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	for _, x := range a {
		if !in[x] {
			return false
		}
	}
	return true
}

func sortedIDs(ids []string) []string {
	out := append([]string{}, ids...)
	sort.Strings(out)
	return out
}

func summaryText(s client.RetriesSummary) string {
	return fmt.Sprintf("succeeded %d, dead-lettered %d, ran more than once %d, replayed %d, faults %s",
		s.Succeeded, s.DeadLettered, s.RanMoreThanOnce, s.ReplayedDuplicates, client.FaultsText(s.Faults))
}
