package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	invocations, throttles, errors, cold, warm, busy, placementFail, overloaded prometheus.Counter
	authFailures, pcInvocations, pcSpillover                                    prometheus.Counter
	asyncReceived, asyncDropped, deadLetterErrors, destinationFailures          prometheus.Counter
	latency, asyncAge                                                           prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, node string) *metrics {
	l := prometheus.Labels{"node": node}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "coldstart", Subsystem: "gateway", Name: name, Help: help, ConstLabels: l})
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
	}
	for _, col := range []prometheus.Collector{m.invocations, m.throttles, m.errors, m.cold, m.warm, m.busy, m.placementFail, m.overloaded, m.authFailures, m.pcInvocations, m.pcSpillover, m.asyncReceived, m.asyncDropped, m.deadLetterErrors, m.destinationFailures, m.asyncAge, m.latency} {
		_ = reg.Register(col)
	}
	return m
}

func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
