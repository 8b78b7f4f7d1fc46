package gateway

import (
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

func TestTimelineRingKeepsNewestInOrder(t *testing.T) {
	tl := newTimeline(time.Now)
	for i := 0; i < timelineCap+10; i++ {
		tl.add(TimelineEvent{Kind: EventDeploy})
	}
	p := tl.since(0)
	if len(p.Events) != timelineCap {
		t.Fatalf("kept %d events, want the ring's %d", len(p.Events), timelineCap)
	}
	if p.Events[0].Seq != 11 || p.Events[len(p.Events)-1].Seq != timelineCap+10 || p.Next != timelineCap+10 {
		t.Fatalf("ring order: first %d last %d next %d", p.Events[0].Seq, p.Events[len(p.Events)-1].Seq, p.Next)
	}
	if got := tl.since(timelineCap + 5).Events; len(got) != 5 || got[0].Seq != timelineCap+6 {
		t.Fatalf("since: %d events from %v", len(got), got)
	}
}

func TestTimelineExternalEventsAreBounded(t *testing.T) {
	tl := newTimeline(time.Now)
	for _, data := range []string{``, `{}`, `{"kind":"Bad Kind"}`, `not json`, `{"kind":"x","seq":99}`} {
		tl.handleExternal(&nats.Msg{Data: []byte(data)})
	}
	got := tl.since(0).Events
	// Only the last is an event, and its sequence number is the gateway's.
	if len(got) != 1 || got[0].Kind != "x" || got[0].Seq != 1 {
		t.Fatalf("external events: %+v", got)
	}
}

func TestQuantileInterpolatesInBuckets(t *testing.T) {
	cum := make([]float64, len(latencyBuckets)+1)
	// 100 observations, all in the bucket (latencyBuckets[9], latencyBuckets[10]].
	for i := 10; i < len(cum); i++ {
		cum[i] = 100
	}
	lo, hi := latencyBuckets[9], latencyBuckets[10]
	for _, q := range []float64{0.5, 0.99} {
		want := lo + (hi-lo)*q
		if got := quantile(cum, q); math.Abs(got-want) > 1e-12 {
			t.Fatalf("q%.2f = %g, want %g", q, got, want)
		}
	}
	if got := quantile(make([]float64, len(cum)), 0.5); got != 0 {
		t.Fatalf("empty interval: %g, want 0", got)
	}
}

func TestThrottleStormStartsAndEnds(t *testing.T) {
	o := &observer{tl: newTimeline(time.Now)}
	t0 := time.Unix(1000, 0)
	rates := []float64{0, ThrottleStormRate - 1, ThrottleStormRate, 50, 0, 0, 0, 0}
	for i, n := range rates {
		o.throttleStorm(t0.Add(time.Duration(i)*time.Second), n, 1)
	}
	ev := o.tl.since(0).Events
	if len(ev) != 2 || ev[0].Kind != EventThrottleStorm || ev[1].Kind != EventThrottleCalm {
		t.Fatalf("events %+v, want a storm start and end", ev)
	}
	if ev[1].Detail != "60 throttles over 4s" {
		t.Fatalf("storm end detail %q", ev[1].Detail)
	}
}

func TestMembershipEvents(t *testing.T) {
	o := &observer{tl: newTimeline(time.Now), prevNodes: map[string]string{}}
	o.membership([]api.Node{{ID: "w1", Role: "worker", State: "alive"}})
	o.started = true // the first sample is the baseline: no events
	o.membership([]api.Node{{ID: "w1", Role: "worker", State: "dead"}, {ID: "w2", Role: "worker", State: "alive"}})
	o.membership([]api.Node{{ID: "w1", Role: "worker", State: "alive"}, {ID: "w2", Role: "worker", State: "alive"}})
	var kinds []string
	for _, e := range o.tl.since(0).Events {
		kinds = append(kinds, e.Kind+":"+e.Node)
	}
	want := []string{"node_down:w1", "node_up:w2", "node_up:w1"}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}

// TestTimelineEndpointsAndBoundedLabels checks that the timeline and
// series are served (without a signature, like the dashboard), reject a
// bad since, and that invoking a name that does not exist leaves no
// per-function series behind.
func TestTimelineEndpointsAndBoundedLabels(t *testing.T) {
	g := startTestGateway(t)
	resp, _ := call(t, http.MethodPost, g.URL()+"/2015-03-31/functions/nosuch/invocations", nil, strings.NewReader("{}"))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("invoke of a missing function: %d", resp.StatusCode)
	}
	for _, path := range []string{PathTimeline, PathSeries, PathTimeline + "?since=3", "/static/chart.min.js", "/static/chart.js.LICENSE"} {
		resp, _ := call(t, http.MethodGet, g.URL()+path, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	for _, path := range []string{PathTimeline + "?since=x", PathSeries + "?since=-x"} {
		if resp, _ := call(t, http.MethodGet, g.URL()+path, nil, nil); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("GET %s: %d, want 400", path, resp.StatusCode)
		}
	}
	r, err := http.Get(g.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if strings.Contains(string(b), `function="nosuch"`) {
		t.Fatalf("a missing function got a series:\n%s", b)
	}
}

// TestPlacementEvents drives the sampler's placement comparison through a
// leader change, a lost and regained quorum, limit changes and a fault.
func TestPlacementEvents(t *testing.T) {
	o := &observer{tl: newTimeline(time.Now), reserved: map[string]string{}, limits: map[string]int{}, faults: map[string]int64{}, known: map[string]bool{}}
	two := 2
	fn := func(res *int, fault *wire.FaultConfig) wire.Function {
		return wire.Function{Account: "a", Name: "f", Reserved: res, Fault: fault}
	}
	snap := func(leader string, limit int, f wire.Function) *wire.Snapshot {
		return &wire.Snapshot{Leader: leader, Term: 7, Accounts: []wire.Account{{ID: "a", Limit: limit}}, Functions: []wire.Function{f}}
	}
	o.placement(true, snap("p1", 10, fn(nil, nil))) // baseline
	o.started = true
	o.placement(true, snap("p2", 10, fn(nil, nil)))
	o.placement(false, nil) // one miss: an election, not a lost quorum
	o.placement(true, snap("p2", 10, fn(nil, nil)))
	o.placement(false, nil)
	o.placement(false, nil)
	o.placement(false, nil)
	o.placement(true, snap("p3", 20, fn(&two, &wire.FaultConfig{Kind: "error-before", SetNs: 5})))
	o.placement(true, snap("p3", 20, fn(&two, nil)))
	var got []string
	for _, e := range o.tl.since(0).Events {
		got = append(got, e.Kind)
	}
	want := []string{EventLeaderChange, EventQuorumLost, EventQuorumRegained, EventLeaderChange, EventLimitChange, EventLimitChange, EventFaultInjected, EventFaultCleared}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
}

// TestRestartedGatewayCountsInTheRegisteredSeries: a gateway restarted in
// one process registers its metrics again; its per-function counts must
// land in the series /metrics serves, not in unregistered copies.
func TestRestartedGatewayCountsInTheRegisteredSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	first := newMetrics(reg, "g1")
	first.fns.get(first, DefaultAccount, "f").warm.Inc()
	second := newMetrics(reg, "g1")
	second.fns.get(second, DefaultAccount, "f").warm.Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "coldstart_gateway_function_invocations_total" {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			if v != 2 {
				t.Fatalf("warm invocations %v after a restart, want 2 (both runs)", v)
			}
			return
		}
	}
	t.Fatal("no coldstart_gateway_function_invocations_total")
}

// TestSameNameInTwoAccountsIsTwoSeries: tenants are apart in the
// per-function metrics too. Function f of the development account and f of
// account 111111111111 get their own series (label account) and their own
// lines in the sampled series (f and 111111111111/f).
func TestSameNameInTwoAccountsIsTwoSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, "g1")
	m.fns.get(m, DefaultAccount, "f").warm.Inc()
	other := m.fns.get(m, "111111111111", "f")
	other.cold.Inc()
	other.cold.Inc()
	other.throttles.Inc()
	o := &observer{g: &Gateway{cfg: Config{Gatherer: reg}}}
	got := o.gather()
	if c := got["f"]; c.warm != 1 || c.cold != 0 || c.throttles != 0 {
		t.Fatalf("development account's f: %+v", c)
	}
	if c := got["111111111111/f"]; c.warm != 0 || c.cold != 2 || c.throttles != 1 {
		t.Fatalf("111111111111's f: %+v (all: %v)", c, got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	accounts := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "coldstart_gateway_function_invocations_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			acct, fn, _ := labelsOf(s)
			if fn == "f" {
				accounts[acct] = true
			}
		}
	}
	if !accounts[DefaultAccount] || !accounts["111111111111"] || len(accounts) != 2 {
		t.Fatalf("accounts labelled on f's series: %v", accounts)
	}
}

// BenchmarkObserveInvoke is what the per-function metrics add to each
// synchronous invocation, against the same handler unwrapped.
func BenchmarkObserveInvoke(b *testing.B) {
	g := &Gateway{m: newMetrics(prometheus.NewRegistry(), "g"), cache: newCache(nil, time.Now)}
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderCold, "false")
		w.Header().Set(api.HeaderDurationMs, "0.25")
		w.WriteHeader(http.StatusOK)
	}
	g.m.fns.get(g.m, DefaultAccount, "f") // the function exists
	req, _ := http.NewRequest(http.MethodPost, "/2015-03-31/functions/f/invocations", nil)
	req.SetPathValue("name", "f")
	for _, c := range []struct {
		name string
		h    http.HandlerFunc
	}{{"bare", h}, {"observed", g.observeInvoke(h)}} {
		b.Run(c.name, func(b *testing.B) {
			w := &recorder{h: http.Header{}}
			for i := 0; i < b.N; i++ {
				clear(w.h)
				c.h(w, req)
			}
		})
	}
}
