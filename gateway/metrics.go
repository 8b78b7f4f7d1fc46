package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

type metrics struct {
	invocations, throttles, errors, cold, warm, busy, placementFail, overloaded prometheus.Counter
	authFailures, pcInvocations, pcSpillover                                    prometheus.Counter
	asyncReceived, asyncDropped, deadLetterErrors, destinationFailures          prometheus.Counter
	latency, asyncAge                                                           prometheus.Histogram

	// Per function, from the synchronous and Event invoke answers (see
	// observeInvoke): what the dashboard and `coldstart top` chart.
	fnInvocations                          *prometheus.CounterVec // account, function, start=cold|warm
	fnErrors, fnThrottles, fnAsyncReceived *prometheus.CounterVec // account, function
	fnAsyncDropped                         *prometheus.CounterVec // account, function
	fnLatency, fnDuration, fnInitDuration  *prometheus.HistogramVec
	fnAsyncAge                             *prometheus.HistogramVec
	fns                                    *fnHandles // per-function handles, and ConcurrentExecutions
}

// Label names of the per-function families.
const (
	labelAccount  = "account"
	labelFunction = "function"
	labelStart    = "start"
)

// latencyBuckets are fine (x1.5) so that p50/p99 interpolated from them
// stay within a third of the true value; 35 buckets cover 100 us to 90 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 1.5, 35)

func newMetrics(reg prometheus.Registerer, node string) *metrics {
	l := prometheus.Labels{"node": node}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "coldstart", Subsystem: "gateway", Name: name, Help: help, ConstLabels: l})
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coldstart", Subsystem: "gateway", Name: name, Help: help, ConstLabels: l}, labels)
	}
	hv := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "gateway", Name: name, Help: help, ConstLabels: l, Buckets: latencyBuckets}, []string{labelAccount, labelFunction})
	}
	m := &metrics{
		invocations:         c("invocations_total", "Invocations that ran (Lambda: Invocations)."),
		throttles:           c("throttles_total", "429 answers (Lambda: Throttles)."),
		errors:              c("errors_total", "Function errors (Lambda: Errors)."),
		cold:                c("cold_starts_total", "Invocations served by a new sandbox."),
		warm:                c("warm_starts_total", "Invocations served by a warm sandbox."),
		busy:                c("warm_busy_total", "Warm attempts answered busy by a worker."),
		placementFail:       c("placement_unavailable_total", "Cold starts refused because placement had no quorum."),
		overloaded:          c("overloaded_total", "Requests answered 503 past the gateway's in-flight cap."),
		authFailures:        c("auth_failures_total", "Requests refused for a bad, expired or missing signature."),
		pcInvocations:       c("provisioned_concurrency_invocations_total", "Invocations served by a provisioned sandbox (Lambda: ProvisionedConcurrencyInvocations)."),
		pcSpillover:         c("provisioned_concurrency_spillover_invocations_total", "Invocations of a version with provisioned concurrency served on demand (Lambda: ProvisionedConcurrencySpilloverInvocations)."),
		asyncReceived:       c("async_events_received_total", "Events accepted for asynchronous invocation (Lambda: AsyncEventsReceived)."),
		asyncDropped:        c("async_events_dropped_total", "Events that exhausted their retries or aged out (Lambda: AsyncEventsDropped)."),
		deadLetterErrors:    c("dead_letter_errors_total", "Failed events the dead-letter stream did not take (Lambda: DeadLetterErrors)."),
		destinationFailures: c("destination_delivery_failures_total", "Destination records not delivered (Lambda: DestinationDeliveryFailures)."),
		asyncAge: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "gateway", Name: "async_event_age_seconds", Help: "Time from an event's acceptance to each of its dispatches (Lambda: AsyncEventAge).", ConstLabels: l,
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "gateway", Name: "invoke_latency_seconds", Help: "Invoke latency at the gateway.", ConstLabels: l,
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),

		fnInvocations:   cv("function_invocations_total", "Invocations that ran, synchronous and asynchronous, per function, split by start=cold|warm (Lambda: Invocations).", labelAccount, labelFunction, labelStart),
		fnErrors:        cv("function_errors_total", "Invocations that ended in a function error, per function (Lambda: Errors).", labelAccount, labelFunction),
		fnAsyncDropped:  cv("function_async_events_dropped_total", "Events that exhausted their retries or aged out, per function (Lambda: AsyncEventsDropped).", labelAccount, labelFunction),
		fnThrottles:     cv("function_throttles_total", "Invoke requests answered 429, per function (Lambda: Throttles).", labelAccount, labelFunction),
		fnAsyncReceived: cv("function_async_events_received_total", "Events accepted (202), per function (Lambda: AsyncEventsReceived).", labelAccount, labelFunction),
		fnLatency:       hv("function_latency_seconds", "Synchronous invoke latency at the gateway, per function (what the caller waits)."),
		fnDuration:      hv("function_duration_seconds", "Handler duration as the worker measured it, per function (Lambda: Duration)."),
		fnInitDuration:  hv("function_init_duration_seconds", "Cold-start init duration, per function (Lambda: InitDuration)."),
		fnAsyncAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "gateway", Name: "function_async_event_age_seconds", Help: "Time from an event's acceptance to each of its dispatches, per function (Lambda: AsyncEventAge).", ConstLabels: l,
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{labelAccount, labelFunction}),
		fns: newFnHandles(node),
	}
	for _, col := range []prometheus.Collector{m.invocations, m.throttles, m.errors, m.cold, m.warm, m.busy, m.placementFail, m.overloaded, m.authFailures, m.pcInvocations, m.pcSpillover, m.asyncReceived, m.asyncDropped, m.deadLetterErrors, m.destinationFailures, m.asyncAge, m.latency} {
		_ = reg.Register(col)
	}
	m.fnInvocations = reuse(reg, m.fnInvocations)
	m.fnErrors = reuse(reg, m.fnErrors)
	m.fnThrottles = reuse(reg, m.fnThrottles)
	m.fnAsyncReceived = reuse(reg, m.fnAsyncReceived)
	m.fnAsyncDropped = reuse(reg, m.fnAsyncDropped)
	m.fnLatency = reuse(reg, m.fnLatency)
	m.fnDuration = reuse(reg, m.fnDuration)
	m.fnInitDuration = reuse(reg, m.fnInitDuration)
	m.fnAsyncAge = reuse(reg, m.fnAsyncAge)
	m.fns = reuse(reg, m.fns)
	return m
}

// reuse registers c, or returns the collector a previous incarnation of
// this node registered under the same names and node label (a gateway
// restarted inside `coldstart up` shares the registry): the restarted
// node goes on counting in the series /metrics shows, instead of into
// unregistered ones.
func reuse[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(T); ok {
			return old
		}
	}
	return c
}

// registerMembers exposes membership health as this gateway sees it:
// how many nodes of each role are alive, suspect or dead.
func (g *Gateway) registerMembers(reg prometheus.Registerer) {
	if g.cfg.Members == nil || reg == nil {
		return
	}
	c := &membersCollector{desc: prometheus.NewDesc("coldstart_gateway_members",
		"Cluster members by role and state (alive, suspect, dead) as this gateway's membership sees them.", []string{"role", "state"}, prometheus.Labels{"node": g.cfg.ID})}
	c.m.Store(&g.cfg.Members)
	// A restarted gateway points the collector it registered before at
	// its new membership.
	reuse(reg, c).m.Store(&g.cfg.Members)
}

type membersCollector struct {
	m    atomic.Pointer[Members]
	desc *prometheus.Desc
}

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[[2]string]int{}
	for _, role := range []string{"placement", "gateway", "worker"} {
		for _, st := range []string{"alive", "suspect", "dead"} {
			n[[2]string{role, st}] = 0 // every series exists, so a rule can watch for 0
		}
	}
	for _, node := range (*c.m.Load()).Nodes() {
		st := node.State
		if st != "suspect" && st != "dead" {
			st = "alive" // leader, follower, candidate are alive members
		}
		n[[2]string{node.Role, st}]++
	}
	for k, v := range n {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), k[0], k[1])
	}
}

// observeInvoke counts one Invoke request per function from its answer:
// the status, X-Amz-Function-Error and the cold/duration headers the
// gateway writes. Reading the answer rather than the routing code keeps
// the per-function view in one place. Only functions that exist get
// series (see fnHandles), so an unknown name cannot grow the label set.
func (g *Gateway) observeInvoke(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fn, acct := r.PathValue("name"), g.account(r)
		if ref, err := ParseFunctionName(fn, ""); err == nil {
			fn = ref.Name
		}
		typ := r.Header.Get(api.HeaderInvocationType)
		sync := typ == "" || typ == "RequestResponse"
		start := time.Now()
		// In flight counts from arrival for a function the cache knows; a
		// function this gateway has not heard of yet is counted from its
		// answer on.
		h := g.m.fns.existing(acct, fn)
		if h == nil && g.cache.get(acct, fn) != nil {
			h = g.m.fns.get(g.m, acct, fn)
		}
		if sync && h != nil {
			h.inflight.Add(1)
			defer h.inflight.Add(-1)
		}
		sw := &statusWriter{ResponseWriter: w}
		next(sw, r)
		switch sw.code {
		case http.StatusOK, http.StatusAccepted, http.StatusTooManyRequests:
			if h == nil {
				h = g.m.fns.get(g.m, acct, fn)
			}
		default:
			return
		}
		switch sw.code {
		case http.StatusOK:
			if !sync {
				return
			}
			hd := w.Header()
			h.ran(hd.Get(api.HeaderCold) == "true", hd.Get(api.HeaderInitMs), hd.Get(api.HeaderDurationMs), hd.Get(api.HeaderFunctionError) != "")
			h.latency.Observe(time.Since(start).Seconds())
		case http.StatusAccepted:
			h.async.Inc()
		case http.StatusTooManyRequests:
			h.throttles.Inc()
		}
	}
}

// fnHandle holds one function's series, resolved once: the invoke path
// then touches no label lookup.
type fnHandle struct {
	account, function                    string
	inflight                             atomic.Int64
	cold, warm, errors, throttles, async prometheus.Counter
	asyncDropped                         prometheus.Counter
	latency, duration, initDur, asyncAge prometheus.Observer
}

// ran counts one invocation that ran from the worker's answer headers
// (synchronous through observeInvoke's copy of them, asynchronous from
// the dispatcher): start, init, function error and duration.
func (h *fnHandle) ran(cold bool, initMs, durMs string, funcErr bool) {
	if cold {
		h.cold.Inc()
		if ms, err := strconv.ParseFloat(initMs, 64); err == nil {
			h.initDur.Observe(ms / 1000)
		}
	} else {
		h.warm.Inc()
	}
	if funcErr {
		h.errors.Inc()
	}
	if ms, err := strconv.ParseFloat(durMs, 64); err == nil {
		h.duration.Observe(ms / 1000)
	}
}

// fnHandles maps functions (account and name) to their handles. Entries are made only
// for functions that exist (the cache knows them, or an invocation was
// answered as one), so the map is bounded by the functions there are.
type fnHandles struct {
	m    sync.Map // wire.FunctionKey(account, name) -> *fnHandle
	desc *prometheus.Desc
}

func newFnHandles(node string) *fnHandles {
	return &fnHandles{desc: prometheus.NewDesc("coldstart_gateway_function_concurrent_executions",
		"Synchronous invocations in flight through this gateway, per function (Lambda: ConcurrentExecutions).", []string{labelAccount, labelFunction}, prometheus.Labels{"node": node})}
}

func (f *fnHandles) existing(acct, fn string) *fnHandle {
	if h, ok := f.m.Load(wire.FunctionKey(acct, fn)); ok {
		return h.(*fnHandle)
	}
	return nil
}

func (f *fnHandles) get(m *metrics, acct, fn string) *fnHandle {
	if h := f.existing(acct, fn); h != nil {
		return h
	}
	h := &fnHandle{account: acct, function: fn,
		cold: m.fnInvocations.WithLabelValues(acct, fn, "cold"), warm: m.fnInvocations.WithLabelValues(acct, fn, "warm"),
		errors: m.fnErrors.WithLabelValues(acct, fn), throttles: m.fnThrottles.WithLabelValues(acct, fn), async: m.fnAsyncReceived.WithLabelValues(acct, fn),
		latency: m.fnLatency.WithLabelValues(acct, fn), duration: m.fnDuration.WithLabelValues(acct, fn), initDur: m.fnInitDuration.WithLabelValues(acct, fn),
		asyncDropped: m.fnAsyncDropped.WithLabelValues(acct, fn), asyncAge: m.fnAsyncAge.WithLabelValues(acct, fn),
	}
	got, _ := f.m.LoadOrStore(wire.FunctionKey(acct, fn), h)
	return got.(*fnHandle)
}

// Describe and Collect make the in-flight counts a gauge family.
func (f *fnHandles) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *fnHandles) Collect(ch chan<- prometheus.Metric) {
	f.m.Range(func(k, v any) bool {
		h := v.(*fnHandle)
		ch <- prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, float64(h.inflight.Load()), h.account, h.function)
		return true
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
