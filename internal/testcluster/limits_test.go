package testcluster_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
)

type outcome struct {
	invokeResult
	Sent, Done time.Time
	Function   string
}

// hammer runs clients closed-loop invokers per function until ctx ends and
// returns every outcome.
func hammer(ctx context.Context, t testing.TB, urls []string, fns map[string]int, payload string) []outcome {
	return hammerWith(ctx, t, urls, fns, payload, 2*time.Millisecond)
}

// hammerWith is hammer with the pause a client takes after a 429.
func hammerWith(ctx context.Context, t testing.TB, urls []string, fns map[string]int, payload string, backoff time.Duration) []outcome {
	var mu sync.Mutex
	var out []outcome
	var wg sync.WaitGroup
	i := 0
	for fn, clients := range fns {
		for c := 0; c < clients; c++ {
			url := urls[i%len(urls)]
			i++
			wg.Add(1)
			go func(fn, url string) {
				defer wg.Done()
				for ctx.Err() == nil {
					s := time.Now()
					r := invoke(t, url, fn, payload)
					o := outcome{invokeResult: r, Sent: s, Done: time.Now(), Function: fn}
					mu.Lock()
					out = append(out, o)
					mu.Unlock()
					if r.Status == http.StatusTooManyRequests {
						// Back off a little like an SDK would, so throttled
						// clients do not spin.
						time.Sleep(backoff)
					}
				}
			}(fn, url)
		}
	}
	wg.Wait()
	return out
}

// busyAt counts records whose sandbox was held at instant t: from the
// worker's receipt of the request to the end of the handler (plus the
// moment it takes to return the sandbox to the pool).
func maxBusyIn(recs []api.Record, keep func(api.Record) bool, from, to time.Time, slack time.Duration) int {
	max := 0
	// In-flight only rises at a receipt, so the maximum over [from,to] is
	// at from or at a receipt inside the window.
	points := []int64{from.UnixNano()}
	for _, r := range recs {
		if h := testcluster.HeldFrom(r); keep(r) && h >= from.UnixNano() && h <= to.UnixNano() {
			points = append(points, h)
		}
	}
	for _, p := range points {
		n := 0
		for _, r := range recs {
			if keep(r) && testcluster.HeldFrom(r) <= p && p <= testcluster.HeldUntil(r)+int64(slack) {
				n++
			}
		}
		if n > max {
			max = n
		}
	}
	return max
}

func TestAccountLimitHoldsUnder5xOverload(t *testing.T) {
	const limit = 12
	// Slow Raft timing: this drill checks the limit, not failover, and
	// leadership must not flap while -race starves 2 cores.
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Raft: slowRaft, Verbose: os.Getenv("CS_VERBOSE") != ""})
	urls := []string{c.GatewayURL(0), c.GatewayURL(1)}
	if code, body := put(t, urls[0], api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: limit}); code != 200 {
		t.Fatalf("set limit: %d %s", code, body)
	}
	// 150 ms handlers: 12 sandboxes serve 80 rps, under Lambda's
	// invocation-rate limit of 10 x 12 per second, so the concurrency limit
	// binds first (closed-loop clients still meet the rate limit between
	// throttles, and those 429s say so).
	createFunction(t, urls[0], synthetic("slow", "150ms", "20ms"))
	createFunction(t, urls[0], synthetic("slow2", "150ms", "20ms"))
	rec := c.Records()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out := hammer(ctx, t, urls, map[string]int{"slow": 3 * limit, "slow2": 2 * limit}, `{}`)
	if err := c.WaitFor(func() bool { return rec.Len() >= countOK(out) }, 5*time.Second); err != nil {
		t.Fatalf("records: have %d, want %d", rec.Len(), countOK(out))
	}
	recs := rec.All()
	if got := testcluster.MaxInFlight(recs, nil); got > limit {
		t.Fatalf("sweep-line max in-flight %d exceeds the account limit %d", got, limit)
	}
	statuses := map[string]int{}
	for _, o := range out {
		statuses[strconv.Itoa(o.Status)+" "+o.ErrorType+" "+o.Body.Text()]++
	}
	t.Logf("outcomes: %v", statuses)
	throttled, overloaded, rated := 0, 0, 0
	for _, o := range out {
		switch o.Status {
		case 200:
		case 429:
			if o.ErrorType == "TooManyRequestsException" && o.Body.Reason == string(quota.ReasonFunctionRate) {
				rated++
				continue
			}
			throttled++
			if o.ErrorType != "TooManyRequestsException" || o.Body.Reason != string(quota.ReasonAccountConcurrency) {
				t.Fatalf("429 with type %q reason %q", o.ErrorType, o.Body.Reason)
			}
		case 500:
			// Placement too slow to answer within its budget: allowed (the
			// machine may be starved under -race), but never a 429 and
			// never most of the answers.
			overloaded++
			if o.ErrorType != "ServiceException" {
				t.Fatalf("500 with type %q", o.ErrorType)
			}
		default:
			t.Fatalf("unexpected status %d %s %+v", o.Status, o.ErrorType, o.Body)
		}
	}
	if throttled == 0 {
		t.Fatalf("5x overload produced no concurrency 429 (%d requests, %d rate-limited)", len(out), rated)
	}
	// Every 429 is judged by the checker users run: it must come while the
	// account held its limit, within its documented window (a grant, a
	// release and a 429 are stamped by different nodes; a victim is in
	// transit between its retirement and its successor's grant; under -race
	// a Raft commit takes tens of milliseconds).
	if err := c.WaitFor(func() bool { return len(rec.Throttles()) >= throttled+rated }, 5*time.Second); err != nil {
		t.Fatalf("throttle records: have %d, want %d", len(rec.Throttles()), throttled+rated)
	}
	testcluster.WriteRecords(t, rec.Everything())
	rep := check.Run(rec.Everything(), check.Options{DefaultLimit: 1000,
		Limits: []check.LimitChange{{AtNs: 0, Account: gateway.DefaultAccount, Limit: limit}}})
	if !rep.OK() {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Fatalf("coldstart check failed:\n%s", b.String())
	}
	if overloaded*10 > len(out) {
		t.Fatalf("%d of %d requests failed with ServiceException", overloaded, len(out))
	}
	if ok := countOK(out); ok < limit {
		t.Fatalf("only %d invocations succeeded", ok)
	}
	t.Logf("%d requests, %d ok, %d throttled, max in-flight %d (limit %d)", len(out), countOK(out), throttled, testcluster.MaxInFlight(recs, nil), limit)
}

var slowRaft = placement.Timing{Heartbeat: time.Second, Election: time.Second, Lease: 500 * time.Millisecond, Commit: 5 * time.Millisecond}

// busyPerWorker sums, over workers, the most sandboxes each held busy at
// one instant within [from, to].
func busyPerWorker(recs []api.Record, from, to time.Time, slack time.Duration) int {
	workers := map[string]bool{}
	for _, r := range recs {
		workers[r.Worker] = true
	}
	sum := 0
	for w := range workers {
		sum += maxBusyIn(recs, func(r api.Record) bool { return r.Worker == w }, from, to, slack)
	}
	return sum
}

// dumpHolds prints the records that held a sandbox near [from, to], each
// sandbox on one line, to explain a failed 429 check.
func dumpHolds(t *testing.T, recs []api.Record, from, to time.Time) {
	ms := func(ns int64) float64 { return float64(ns-from.UnixNano()) / 1e6 }
	t.Logf("request window: 0 .. %.2f", ms(to.UnixNano()))
	bySandbox := map[string][]api.Record{}
	for _, r := range recs {
		if testcluster.HeldUntil(r) >= from.UnixNano()-int64(200*time.Millisecond) && testcluster.HeldFrom(r) <= to.UnixNano()+int64(200*time.Millisecond) {
			bySandbox[r.Sandbox] = append(bySandbox[r.Sandbox], r)
		}
	}
	for sb, rs := range bySandbox {
		line := sb[:11] + " " + rs[0].Worker + ":"
		for _, r := range rs {
			c := ""
			if r.Cold {
				c = "cold "
			}
			line += fmt.Sprintf(" [%s%.2f .. %.2f/%.2f]", c, ms(testcluster.HeldFrom(r)), ms(r.EndNs), ms(testcluster.HeldUntil(r)))
		}
		t.Log(line)
	}
}

func countOK(out []outcome) int {
	n := 0
	for _, o := range out {
		if o.Status == 200 {
			n++
		}
	}
	return n
}

func TestIdleSandboxesOfOtherFunctionsAreReclaimed(t *testing.T) {
	const limit = 10
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Raft: slowRaft})
	url := c.GatewayURL(0)
	put(t, url, api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: limit})
	createFunction(t, url, synthetic("a", "100ms", "5ms"))
	createFunction(t, url, synthetic("b", "100ms", "5ms"))
	burst := func(fn string) []invokeResult {
		res := make([]invokeResult, limit)
		var wg sync.WaitGroup
		for i := range res {
			wg.Add(1)
			go func(i int) { defer wg.Done(); res[i] = invoke(t, url, fn, `{}`) }(i)
		}
		wg.Wait()
		return res
	}
	for _, r := range burst("a") {
		if r.Status != 200 {
			t.Fatalf("a: %d %s", r.Status, r.ErrorType)
		}
	}
	// The account now holds 10 idle sandboxes of a: b must get room by
	// retiring them, not a 429.
	cold := 0
	for _, r := range burst("b") {
		if r.Status != 200 {
			t.Fatalf("b throttled while a's sandboxes were idle: %d %s %+v", r.Status, r.ErrorType, r.Body)
		}
		if r.Cold {
			cold++
		}
	}
	if cold != limit {
		t.Fatalf("b cold starts %d, want %d", cold, limit)
	}
}

func TestReservedConcurrency(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Raft: slowRaft})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("r", "80ms", "5ms"))
	createFunction(t, url, synthetic("zero", "1ms", "1ms"))
	code, body := put(t, url, "/2017-10-31/functions/r/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(950)})
	if code != 400 || !strings.Contains(string(body), "decreases account's UnreservedConcurrentExecution below its minimum value of [100]") {
		t.Fatalf("reserving 950 of 1000: %d %s", code, body)
	}
	if code, body := put(t, url, "/2017-10-31/functions/r/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(4)}); code != 200 {
		t.Fatalf("reserve 4: %d %s", code, body)
	}
	if code, body := put(t, url, "/2017-10-31/functions/zero/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(0)}); code != 200 {
		t.Fatalf("reserve 0: %d %s", code, body)
	}
	if r := invoke(t, url, "zero", `{}`); r.Status != 429 || r.Body.Reason != string(quota.ReasonReservedConcurrency) {
		t.Fatalf("reserved 0 must throttle everything: %d %+v", r.Status, r.Body)
	}
	rec := c.Records()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	out := hammer(ctx, t, []string{url}, map[string]int{"r": 16}, `{}`)
	c.WaitFor(func() bool { return rec.Len() >= countOK(out) }, 5*time.Second)
	throttled := 0
	for _, o := range out {
		if o.Status == 429 {
			throttled++
			if o.Body.Reason != string(quota.ReasonReservedConcurrency) {
				t.Fatalf("reason %q", o.Body.Reason)
			}
		}
	}
	if got := testcluster.MaxInFlight(rec.All(), func(r api.Record) bool { return r.Function == "r" }); got > 4 {
		t.Fatalf("function r ran %d at once with reserved concurrency 4", got)
	}
	if throttled == 0 {
		t.Fatal("no reserved-concurrency throttles")
	}
}

func intp(n int) *int { return &n }

// TestLoweredLimitIsEnforced: lowering the account limit under load trims
// the sandboxes above it; once their running invocations end, in-flight
// stays under the new limit.
func TestLoweredLimitIsEnforced(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Raft: slowRaft})
	url := c.GatewayURL(0)
	put(t, url, api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: 20})
	createFunction(t, url, synthetic("f", "40ms", "5ms"))
	rec := c.Records()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	changed := make(chan time.Time, 1)
	go func() {
		// Let 20 sandboxes warm up under load first.
		if err := c.WaitFor(func() bool { return rec.Len() >= 100 }, 2*time.Second); err != nil {
			t.Error("no load before the change")
		}
		if code, body := put(t, url, api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: 5}); code != 200 {
			t.Errorf("lower limit: %d %s", code, body)
		}
		changed <- time.Now()
	}()
	out := hammer(ctx, t, []string{url}, map[string]int{"f": 20}, `{}`)
	c.WaitFor(func() bool { return rec.Len() >= countOK(out) }, 5*time.Second)
	at := <-changed
	// Invocations running at the change may finish (40 ms); after that the
	// new limit holds.
	from := at.Add(150 * time.Millisecond).UnixNano()
	var after []api.Record
	for _, r := range rec.All() {
		if r.EndNs > from {
			if testcluster.HeldFrom(r) < from {
				r.GrantedNs, r.ReceivedNs = 0, from
			}
			after = append(after, r)
		}
	}
	if len(after) == 0 {
		t.Fatal("no invocations after the change")
	}
	if got := testcluster.MaxInFlight(after, nil); got > 5 {
		t.Fatalf("in-flight %d after lowering the limit to 5", got)
	}
}

// TestReclaimNeverChurnsAFunctionAgainstItself: at a reserved limit with
// idle sandboxes of the same function, a request is sent to the warm path,
// never given a new sandbox in place of one of its own idle ones. Cold
// starts stay at the sandboxes actually added (once a same-function idle
// sandbox was reclaimed and re-created for nearly every request past the
// limit: 154 cold starts for 50 sandboxes).
func TestReclaimNeverChurnsAFunctionAgainstItself(t *testing.T) {
	const reserved = 50
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Raft: slowRaft})
	urls := []string{c.GatewayURL(0), c.GatewayURL(1)}
	createFunction(t, urls[0], synthetic("r", "80ms", "20ms"))
	if code, body := put(t, urls[0], "/2017-10-31/functions/r/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(reserved)}); code != 200 {
		t.Fatalf("reserve: %d %s", code, body)
	}
	rec := c.Records()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	// 1.5x the reservation in closed-loop clients: the function sits at its
	// limit with sandboxes coming back idle all the time.
	out := hammerWith(ctx, t, urls, map[string]int{"r": reserved * 3 / 2}, `{}`, 10*time.Millisecond)
	if err := c.WaitFor(func() bool { return rec.Len() >= countOK(out) }, 5*time.Second); err != nil {
		t.Fatalf("records: have %d, want %d", rec.Len(), countOK(out))
	}
	cold, sandboxes := 0, map[string]bool{}
	for _, r := range rec.All() {
		sandboxes[r.Sandbox] = true
		if r.Cold {
			cold++
		}
	}
	peak := testcluster.MaxInFlight(rec.All(), nil)
	t.Logf("%d invocations, %d cold starts, %d sandboxes, peak %d", len(rec.All()), cold, len(sandboxes), peak)
	if peak > reserved {
		t.Fatalf("peak in-flight %d above the reservation %d", peak, reserved)
	}
	if cold > reserved+reserved/10 {
		t.Fatalf("%d cold starts for a reservation of %d: the function churned its own sandboxes", cold, reserved)
	}
}

// TestLoweredReservationWhileBusy: a reservation lowered below what is
// running, with long handlers. The invocations running at the change run
// to their end; no invocation starts while the function holds its new
// reservation, warm ones on sandboxes it kept included (coldstart check
// with the change in its limit history). Those kept sandboxes once took
// new requests while the trimmed ones still ran: 7 held of 4.
func TestLoweredReservationWhileBusy(t *testing.T) {
	const before, after = 8, 3
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2, Raft: slowRaft})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("busy", "1s", "20ms"))
	rec := c.Records()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan time.Time, 1)
	go func() {
		defer cancel()
		// Every client's first invocation is running on a sandbox of its
		// own when the reservation drops.
		if err := c.WaitFor(func() bool { return rec.Len() >= 2*before }, 10*time.Second); err != nil {
			t.Error("no load before the change")
			return
		}
		if code, body := put(t, url, "/2017-10-31/functions/busy/concurrency", api.Concurrency{ReservedConcurrentExecutions: intp(after)}); code != 200 {
			t.Errorf("lower the reservation: %d %s", code, body)
		}
		changed <- time.Now()
		// Long enough for the trimmed invocations to end and new ones to
		// start under the new reservation.
		time.Sleep(3 * time.Second) // the load's schedule, not a wait for anything
	}()
	out := hammerWith(ctx, t, []string{url}, map[string]int{"busy": before}, `{}`, 10*time.Millisecond)
	if t.Failed() {
		t.FailNow()
	}
	at := <-changed
	if err := c.WaitFor(func() bool { return rec.Len() >= countOK(out) }, 5*time.Second); err != nil {
		t.Fatalf("records: have %d, want %d", rec.Len(), countOK(out))
	}
	started := 0
	for _, r := range rec.All() {
		if testcluster.HeldFrom(r) > at.UnixNano() {
			started++
		}
	}
	if started < after {
		t.Fatalf("%d invocations started after the change, want at least %d (the new reservation serves)", started, after)
	}
	testcluster.WriteRecords(t, rec.Everything())
	rep := check.Run(rec.Everything(), check.Options{DefaultLimit: 1000, Limits: []check.LimitChange{
		{AtNs: at.UnixNano(), Account: gateway.DefaultAccount, Function: "busy", Reserved: intp(after)},
	}})
	var b strings.Builder
	rep.WriteTable(&b)
	if !rep.OK() {
		t.Fatalf("coldstart check over a reservation lowered from %d running to %d:\n%s", before, after, b.String())
	}
	t.Logf("%d invocations started after the change; coldstart check:\n%s", started, b.String())
}
