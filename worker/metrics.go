package worker

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	invocations, errors, cold, warm, evicted, reclaimed, fenced prometheus.Counter
	duration, initDur                                           prometheus.Histogram
}

// newMetrics registers the worker's metrics (Lambda's names where one
// exists) with a constant node label, so several workers can share one
// registry in `coldstart up`.
func newMetrics(reg prometheus.Registerer, node string) *metrics {
	l := prometheus.Labels{"node": node}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "coldstart", Subsystem: "worker", Name: name, Help: help, ConstLabels: l})
	}
	m := &metrics{
		invocations: c("invocations_total", "Invocations run (Lambda: Invocations)."),
		errors:      c("errors_total", "Function errors incl. timeouts (Lambda: Errors)."),
		cold:        c("cold_starts_total", "Invocations that cold-started a sandbox."),
		warm:        c("warm_starts_total", "Invocations served by a warm sandbox."),
		evicted:     c("evicted_total", "Idle sandboxes evicted by keep-alive TTL."),
		reclaimed:   c("reclaimed_total", "Idle sandboxes retired to make room for another function."),
		fenced:      c("fenced_total", "Warm requests refused while the worker was fenced after a pause."),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "worker", Name: "duration_seconds", Help: "Handler duration (Lambda: Duration).", ConstLabels: l,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		initDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "coldstart", Subsystem: "worker", Name: "init_duration_seconds", Help: "Cold-start duration (Lambda: InitDuration).", ConstLabels: l,
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.invocations, m.errors, m.cold, m.warm, m.evicted, m.reclaimed, m.fenced, m.duration, m.initDur} {
			_ = reg.Register(col)
		}
	}
	return m
}

// registerPoolMetrics exposes the pool as it is at scrape time:
// invocations in flight per function (Lambda: ConcurrentExecutions) and
// the sandboxes held, idle or busy.
func (n *Node) registerPoolMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	l := prometheus.Labels{"node": n.cfg.ID}
	c := &poolCollector{
		conc: prometheus.NewDesc("coldstart_worker_concurrent_executions", "Invocations running on this worker, per function (Lambda: ConcurrentExecutions).", []string{"account", "function"}, l),
		sbs:  prometheus.NewDesc("coldstart_worker_sandboxes", "Sandboxes this worker holds, by state (idle, busy).", []string{"state"}, l)}
	c.n.Store(n)
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		// A worker restarted in the same process (`coldstart up`): the
		// collector its previous run registered reads this run's pool.
		if old, ok := are.ExistingCollector.(*poolCollector); ok {
			old.n.Store(n)
		}
	}
}

type poolCollector struct {
	n         atomic.Pointer[Node]
	conc, sbs *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.conc; ch <- c.sbs }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Load().Stats()
	busy := map[[2]string]int{}
	for _, k := range s.Keys {
		busy[[2]string{k.Account, k.Function}] += k.Total - k.Idle
	}
	for fn, b := range busy {
		ch <- prometheus.MustNewConstMetric(c.conc, prometheus.GaugeValue, float64(b), fn[0], fn[1])
	}
	ch <- prometheus.MustNewConstMetric(c.sbs, prometheus.GaugeValue, float64(s.Idle), "idle")
	ch <- prometheus.MustNewConstMetric(c.sbs, prometheus.GaugeValue, float64(s.Busy), "busy")
}
