package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// The observer samples the cluster every second for the dashboard and
// `coldstart top`: per-function rates and latency percentiles from this
// process's metrics, concurrency from the workers, nodes from membership
// and the leader from placement. It keeps seriesCap samples, so a page
// opened now draws the last few minutes, and it turns the differences
// between samples into timeline events.

// PathSeries serves the sampled history: ?since=UNIX_MS returns the
// samples taken after it.
const PathSeries = "/coldstart/v1/series"

// SampleInterval is how often the observer samples.
const SampleInterval = time.Second

// seriesCap keeps five minutes of samples.
const seriesCap = 300

// ThrottleStormRate is the 429 rate (per second, all functions) at which
// a throttle storm starts; it ends after stormCalm seconds below it.
const (
	ThrottleStormRate = 10
	stormCalm         = 3
)

// quorumGrace is how many failed leader reads in a row count as a lost
// quorum: one failure is a leader change in progress.
const quorumGrace = 2

// FunctionPoint is one function in one sample. Rates are per second over
// the interval since the previous sample; totals are the cumulative
// counters of the gateway metrics (what /metrics shows, summed over the
// gateways that share this process's registry).
type FunctionPoint struct {
	Invocations float64 `json:"invocations"`
	Cold        float64 `json:"cold"`
	Warm        float64 `json:"warm"`
	Errors      float64 `json:"errors"`
	Throttles   float64 `json:"throttles"`
	// P50Ms and P99Ms are the interval's latency percentiles, interpolated
	// in the histogram buckets (within a bucket's x1.5 width); 0 when the
	// interval had no invocation.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Concurrency is the invocations in flight on the workers; Limit the
	// function's reserved concurrency, else its account's limit.
	Concurrency int  `json:"concurrency"`
	Limit       int  `json:"limit"`
	Reserved    bool `json:"reserved,omitempty"`

	TotalInvocations float64 `json:"total_invocations"`
	TotalCold        float64 `json:"total_cold"`
	TotalWarm        float64 `json:"total_warm"`
	TotalErrors      float64 `json:"total_errors"`
	TotalThrottles   float64 `json:"total_throttles"`
}

// SeriesPoint is one sample.
type SeriesPoint struct {
	TimeMs    int64                    `json:"time_ms"`
	Functions map[string]FunctionPoint `json:"functions"`
}

// Series is PathSeries's answer: the samples and the cluster as the last
// sample saw it.
type Series struct {
	IntervalMs int64         `json:"interval_ms"`
	Leader     string        `json:"leader"`
	Quorum     bool          `json:"quorum"`
	Nodes      []api.Node    `json:"nodes"`
	Functions  []string      `json:"functions"`
	Points     []SeriesPoint `json:"points"`
}

type observer struct {
	g   *Gateway
	tl  *timeline
	sub []*nats.Subscription

	mu     sync.Mutex
	points []SeriesPoint // oldest first, at most seriesCap
	last   Series        // cluster view of the last sample (without points)

	// Only the sampling goroutine touches what follows.
	started    bool
	prevAt     time.Time
	prevFn     map[string]fnCounters
	prevNodes  map[string]string
	leader     string
	quorum     bool
	failures   int
	reserved   map[string]string // function key -> reserved ("" none)
	limits     map[string]int    // account -> limit
	faults     map[string]int64  // function key -> fault SetNs
	known      map[string]bool   // function keys seen
	prevThr    float64
	storm      bool
	stormStart time.Time
	stormCount float64
	calm       int
}

// fnCounters are one function's cumulative counters and latency buckets.
type fnCounters struct {
	cold, warm, errors, throttles float64
	buckets                       []float64 // cumulative counts at latencyBuckets, then +Inf
}

// startObserver subscribes to placement's change notices and to
// SubjectTimeline, and samples until the gateway stops.
func (g *Gateway) startObserver() *observer {
	o := &observer{g: g, tl: newTimeline(g.cfg.Now), prevFn: map[string]fnCounters{}, prevNodes: map[string]string{},
		reserved: map[string]string{}, limits: map[string]int{}, faults: map[string]int64{}, known: map[string]bool{}}
	for subj, h := range map[string]nats.MsgHandler{wire.SubjectEvents: o.handlePlacementEvent, SubjectTimeline: o.tl.handleExternal} {
		if s, err := g.nc.Subscribe(subj, h); err == nil {
			o.sub = append(o.sub, s)
		} else {
			g.log.Warn("timeline: subscribe", "subject", subj, "err", err)
		}
	}
	g.registerMembers(g.cfg.Registry)
	go o.loop()
	return o
}

func (o *observer) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathTimeline, o.tl.handle)
	mux.HandleFunc("GET "+PathSeries, o.handleSeries)
	mux.HandleFunc("GET /static/chart.min.js", handleChartJS)
	mux.HandleFunc("GET /static/chart.js.LICENSE", handleChartLicense)
}

func (o *observer) loop() {
	t := time.NewTicker(SampleInterval)
	defer t.Stop()
	o.sample()
	for {
		select {
		case <-o.g.done:
			for _, s := range o.sub {
				s.Unsubscribe()
			}
			return
		case <-t.C:
			o.sample()
		}
	}
}

// handlePlacementEvent turns placement's change notices into timeline
// events: deploys, creations and deletions are announced there by the
// leader, whichever gateway took the request.
func (o *observer) handlePlacementEvent(m *nats.Msg) {
	ev, ok := decodeEvent(m.Data)
	if !ok {
		return
	}
	switch ev.Kind {
	case wire.EventDeploy:
		d := "$LATEST changed (revision " + strconv.FormatUint(ev.Revision, 10) + ")"
		switch {
		case ev.Revision == 0:
			d = "version " + ev.Version + " deleted"
		case ev.Version != "" && ev.Version != "$LATEST":
			d = "version " + ev.Version + " published"
		}
		o.tl.add(TimelineEvent{Kind: EventDeploy, Function: ev.Function, Detail: d})
	case wire.EventDelete:
		o.tl.add(TimelineEvent{Kind: EventFunctionDelete, Function: ev.Function})
	}
	// EventFunction and EventAccount (reservations, limits) are compared
	// by the sampler, which can say what the value was and became.
}

func (o *observer) handleSeries(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			writeError(w, errInvalidParam("since must be Unix milliseconds"))
			return
		}
		since = v
	}
	writeJSON(w, http.StatusOK, o.series(since))
}

func (o *observer) series(since int64) Series {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.last
	s.Points = []SeriesPoint{}
	for _, p := range o.points {
		if p.TimeMs > since {
			s.Points = append(s.Points, p)
		}
	}
	return s
}

// sample takes one sample and records what changed since the last.
func (o *observer) sample() {
	g := o.g
	now := g.cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()

	// Placement: a leader that answers means quorum (hashicorp/raft's
	// leader steps down when it loses its followers).
	sn, err := g.pl.ReadLeader(ctx)
	quorum := err == nil && sn != nil && sn.Leader != ""
	if !quorum {
		sn = g.cache.snapshot() // functions and limits as last known
	}
	o.placement(quorum, sn)

	var nodes []api.Node
	if g.cfg.Members != nil {
		nodes = g.cfg.Members.Nodes()
	}
	o.membership(nodes)

	counters := o.gather()
	inflight := map[string]int{}
	for _, s := range g.workerStats(ctx, sn) {
		for _, k := range s.Keys {
			inflight[seriesKey(k.Account, k.Function)] += k.Total - k.Idle
		}
	}
	limits := o.functionLimits(sn)

	pt := SeriesPoint{TimeMs: now.UnixMilli(), Functions: map[string]FunctionPoint{}}
	secs := now.Sub(o.prevAt).Seconds()
	var throttles float64
	names := map[string]bool{}
	for fn := range counters {
		names[fn] = true
	}
	for fn := range limits {
		names[fn] = true
	}
	for fn := range names {
		c := counters[fn]
		throttles += c.throttles
		p := FunctionPoint{TotalCold: c.cold, TotalWarm: c.warm, TotalInvocations: c.cold + c.warm, TotalErrors: c.errors, TotalThrottles: c.throttles,
			Concurrency: inflight[fn]}
		if l, ok := limits[fn]; ok {
			p.Limit, p.Reserved = l.limit, l.reserved
		}
		// A function without a previous sample has new series, which
		// start at zero: its first counts belong to this interval.
		if prev := o.prevFn[fn]; o.started && secs > 0 {
			p.Cold = math.Max(0, c.cold-prev.cold) / secs
			p.Warm = math.Max(0, c.warm-prev.warm) / secs
			p.Invocations = p.Cold + p.Warm
			p.Errors = math.Max(0, c.errors-prev.errors) / secs
			p.Throttles = math.Max(0, c.throttles-prev.throttles) / secs
			d := bucketDelta(c.buckets, prev.buckets)
			p.P50Ms = quantile(d, 0.50) * 1000
			p.P99Ms = quantile(d, 0.99) * 1000
		}
		pt.Functions[fn] = p
	}
	if o.started && secs > 0 {
		o.throttleStorm(now, math.Max(0, throttles-o.prevThr), secs)
	}
	o.prevThr = throttles
	o.prevFn = counters
	o.prevAt = now

	fns := make([]string, 0, len(names))
	for fn := range names {
		fns = append(fns, fn)
	}
	sort.Strings(fns)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	o.mu.Lock()
	leader := ""
	if sn != nil && quorum {
		leader = sn.Leader
	}
	o.last = Series{IntervalMs: SampleInterval.Milliseconds(), Leader: leader, Quorum: quorum, Nodes: nodes, Functions: fns}
	if o.started {
		o.points = append(o.points, pt)
		if len(o.points) > seriesCap {
			o.points = o.points[len(o.points)-seriesCap:]
		}
	}
	o.mu.Unlock()
	o.started = true
}

// placement compares the leader, the quorum, limits and faults with the
// previous sample.
func (o *observer) placement(quorum bool, sn *wire.Snapshot) {
	if quorum {
		if o.started && !o.quorum && o.failures >= quorumGrace {
			o.tl.add(TimelineEvent{Kind: EventQuorumRegained, Node: sn.Leader, Detail: "placement answers again; leader " + sn.Leader})
		}
		o.failures = 0
		if o.leader != "" && sn.Leader != o.leader {
			o.tl.add(TimelineEvent{Kind: EventLeaderChange, Node: sn.Leader, Detail: fmt.Sprintf("leader %s -> %s (term %d)", o.leader, sn.Leader, sn.Term)})
		} else if o.leader == "" && o.started && o.quorum {
			o.tl.add(TimelineEvent{Kind: EventLeaderChange, Node: sn.Leader, Detail: "leader " + sn.Leader})
		}
		o.leader = sn.Leader
		o.quorum = true
	} else {
		o.failures++
		if o.failures == quorumGrace && (o.quorum || !o.started) {
			o.tl.add(TimelineEvent{Kind: EventQuorumLost, Node: o.leader, Detail: "no placement leader answers this gateway: cold starts fail, warm invocations go on"})
			o.quorum = false
		}
	}
	if sn == nil {
		return
	}
	for _, a := range sn.Accounts {
		if old, ok := o.limits[a.ID]; ok && old != a.Limit && o.started {
			o.tl.add(TimelineEvent{Kind: EventLimitChange, Detail: fmt.Sprintf("account %s concurrency limit %d -> %d", a.ID, old, a.Limit)})
		}
		o.limits[a.ID] = a.Limit
	}
	for _, f := range sn.Functions {
		fk := wire.FunctionKey(f.Account, f.Name)
		res := ""
		if f.Reserved != nil {
			res = strconv.Itoa(*f.Reserved)
		}
		if !o.known[fk] {
			if o.started {
				o.tl.add(TimelineEvent{Kind: EventFunctionCreate, Function: f.Name, Detail: "account " + f.Account})
			}
			o.known[fk] = true
		} else if old := o.reserved[fk]; old != res {
			o.tl.add(TimelineEvent{Kind: EventLimitChange, Function: f.Name, Detail: fmt.Sprintf("reserved concurrency %s -> %s", orNone(old), orNone(res))})
		}
		o.reserved[fk] = res
		var set int64
		if f.Fault != nil {
			set = f.Fault.SetNs
		}
		if old := o.faults[fk]; old != set && o.started {
			if set != 0 {
				o.tl.add(TimelineEvent{Kind: EventFaultInjected, Function: f.Name, Detail: faultDetail(f.Fault)})
			} else {
				o.tl.add(TimelineEvent{Kind: EventFaultCleared, Function: f.Name})
			}
		}
		o.faults[fk] = set
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func faultDetail(f *wire.FaultConfig) string {
	d := f.Kind
	if f.Rate > 0 {
		d += fmt.Sprintf(" at rate %g", f.Rate)
	}
	if len(f.Nth) > 0 {
		d += fmt.Sprintf(" on invocations %v", f.Nth)
	}
	return d
}

// membership turns changes of node state into node_down / node_up.
func (o *observer) membership(nodes []api.Node) {
	cur := map[string]string{}
	for _, n := range nodes {
		st := "up"
		if n.State == "dead" || n.State == "suspect" {
			st = n.State
		}
		cur[n.ID] = st
		prev, seen := o.prevNodes[n.ID]
		if !o.started || prev == st {
			continue
		}
		switch {
		case st == "dead" || st == "suspect":
			o.tl.add(TimelineEvent{Kind: EventNodeDown, Node: n.ID, Detail: n.Role + " " + st})
		case seen || o.started:
			o.tl.add(TimelineEvent{Kind: EventNodeUp, Node: n.ID, Detail: n.Role + " alive"})
		}
	}
	for id := range o.prevNodes {
		if _, ok := cur[id]; !ok && o.prevNodes[id] == "up" {
			// Gone from the list without being reported dead: it left.
			o.tl.add(TimelineEvent{Kind: EventNodeDown, Node: id, Detail: "left the cluster"})
		}
	}
	o.prevNodes = cur
}

// throttleStorm starts a storm at ThrottleStormRate 429s per second and
// ends it after stormCalm quieter samples.
func (o *observer) throttleStorm(now time.Time, n, secs float64) {
	rate := n / secs
	switch {
	case rate >= ThrottleStormRate && !o.storm:
		o.storm, o.stormStart, o.stormCount, o.calm = true, now, n, 0
		o.tl.add(TimelineEvent{Kind: EventThrottleStorm, Detail: fmt.Sprintf("%.0f throttles/s", rate)})
	case o.storm && rate >= ThrottleStormRate:
		o.stormCount += n
		o.calm = 0
	case o.storm:
		o.stormCount += n
		o.calm++
		if o.calm >= stormCalm {
			o.storm = false
			o.tl.add(TimelineEvent{Kind: EventThrottleCalm, Detail: fmt.Sprintf("%.0f throttles over %s", o.stormCount, now.Sub(o.stormStart).Round(time.Second))})
		}
	}
}

type fnLimit struct {
	limit    int
	reserved bool
}

func (o *observer) functionLimits(sn *wire.Snapshot) map[string]fnLimit {
	out := map[string]fnLimit{}
	if sn == nil {
		return out
	}
	acct := map[string]int{}
	for _, a := range sn.Accounts {
		acct[a.ID] = a.Limit
	}
	for _, f := range sn.Functions {
		if f.Reserved != nil {
			out[seriesKey(f.Account, f.Name)] = fnLimit{*f.Reserved, true}
			continue
		}
		l, ok := acct[f.Account]
		if !ok || l == 0 {
			l = quota.DefaultAccountLimit
		}
		out[seriesKey(f.Account, f.Name)] = fnLimit{limit: l}
	}
	return out
}

// gather reads the per-function families from the registry /metrics
// serves, summed over the node label.
func (o *observer) gather() map[string]fnCounters {
	out := map[string]fnCounters{}
	mfs, err := o.g.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "coldstart_gateway_function_invocations_total", "coldstart_gateway_function_errors_total",
			"coldstart_gateway_function_throttles_total", "coldstart_gateway_function_latency_seconds":
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			acct, fn, start := labelsOf(m)
			fn = seriesKey(acct, fn)
			c := out[fn]
			switch mf.GetName() {
			case "coldstart_gateway_function_invocations_total":
				if start == "cold" {
					c.cold += m.GetCounter().GetValue()
				} else {
					c.warm += m.GetCounter().GetValue()
				}
			case "coldstart_gateway_function_errors_total":
				c.errors += m.GetCounter().GetValue()
			case "coldstart_gateway_function_throttles_total":
				c.throttles += m.GetCounter().GetValue()
			case "coldstart_gateway_function_latency_seconds":
				h := m.GetHistogram()
				if c.buckets == nil {
					c.buckets = make([]float64, len(latencyBuckets)+1)
				}
				for i, b := range h.GetBucket() {
					if i < len(latencyBuckets) {
						c.buckets[i] += float64(b.GetCumulativeCount())
					}
				}
				c.buckets[len(latencyBuckets)] += float64(h.GetSampleCount())
			}
			out[fn] = c
		}
	}
	return out
}

func labelsOf(m *dto.Metric) (acct, fn, start string) {
	for _, l := range m.GetLabel() {
		switch l.GetName() {
		case labelAccount:
			acct = l.GetValue()
		case labelFunction:
			fn = l.GetValue()
		case labelStart:
			start = l.GetValue()
		}
	}
	return acct, fn, start
}

// seriesKey names a function in the sampled series: its name for the
// development account, ACCOUNT/NAME for any other, so that functions of the
// same name in two accounts are two lines on the dashboard.
func seriesKey(acct, fn string) string {
	if acct == "" || acct == DefaultAccount {
		return fn
	}
	return wire.FunctionKey(acct, fn)
}

// bucketDelta is the interval's cumulative bucket counts (cur - prev).
func bucketDelta(cur, prev []float64) []float64 {
	if cur == nil {
		return nil
	}
	d := make([]float64, len(cur))
	for i := range cur {
		d[i] = cur[i]
		if i < len(prev) {
			d[i] -= prev[i]
		}
	}
	return d
}

// quantile interpolates quantile q (seconds) in cumulative bucket counts
// at latencyBuckets (+Inf last), as Prometheus's histogram_quantile does.
// It is 0 when the buckets hold nothing.
func quantile(cum []float64, q float64) float64 {
	if len(cum) == 0 || cum[len(cum)-1] <= 0 {
		return 0
	}
	rank := q * cum[len(cum)-1]
	lower, below := 0.0, 0.0
	for i, c := range cum {
		if c >= rank {
			if i >= len(latencyBuckets) {
				return latencyBuckets[len(latencyBuckets)-1] // beyond the last bucket: its bound
			}
			upper := latencyBuckets[i]
			if c == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(c-below)
		}
		if i < len(latencyBuckets) {
			lower = latencyBuckets[i]
		}
		below = c
	}
	return latencyBuckets[len(latencyBuckets)-1]
}
