package client

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// The retries report (coldstart retries report): from the records the
// cluster kept and its dead letters, what happened to each request across
// its deliveries, and above all whether its handler ran more than once,
// which is what a non-idempotent side effect pays for.

// Final states of a request in a RetriesReport.
const (
	StateSucceeded    = "succeeded"     // a delivery's success reached the caller (or the dispatcher)
	StateDeadLettered = "dead-lettered" // in the dead-letter stream, not redriven since
	StateInFlight     = "in flight"     // an event still being delivered, or redriven
	StateFailed       = "failed"        // a synchronous call whose answer was an error
)

// RequestHistory is one request id's deliveries.
type RequestHistory struct {
	RequestID string `json:"request_id"`
	Function  string `json:"function"`
	// Attempts counts its records: deliveries that reached a sandbox or a
	// platform refusal (throttled, injected, rejected).
	Attempts int `json:"attempts"`
	// Outcomes are the records' outcomes in time order, each marked with
	// what changed its meaning: "ok[crash-after-handler]" (the result was
	// lost), "ok(replayed)", "ok(duplicate)".
	Outcomes []string `json:"outcomes"`
	// Runs counts the records whose handler ran: ok, function_error,
	// timeout or fenced, and not answered from the idempotency store.
	Runs            int    `json:"runs"`
	Replayed        int    `json:"replayed,omitempty"`
	RanMoreThanOnce bool   `json:"ran_more_than_once"`
	State           string `json:"state"`
	// DeadLetter is the dead-letter condition when the request is (or was)
	// in the dead-letter stream.
	DeadLetter string         `json:"dead_letter,omitempty"`
	Faults     map[string]int `json:"faults,omitempty"`

	first int64
}

// RetriesSummary counts a report's requests.
type RetriesSummary struct {
	Requests        int `json:"requests"`
	Succeeded       int `json:"succeeded"`
	DeadLettered    int `json:"dead_lettered"`
	InFlight        int `json:"in_flight"`
	Failed          int `json:"failed"`
	RanMoreThanOnce int `json:"ran_more_than_once"`
	// ReplayedDuplicates counts the deliveries the platform's idempotency
	// answered with a stored response instead of running the handler.
	ReplayedDuplicates int `json:"replayed_duplicates"`
	// Faults counts injected faults by kind (a duplicate-delivery once,
	// though both of its deliveries are marked).
	Faults map[string]int `json:"faults"`
}

// RetriesReport is the report: requests in the order they were first
// seen, and the summary.
type RetriesReport struct {
	Requests []RequestHistory `json:"requests"`
	Summary  RetriesSummary   `json:"summary"`
}

// RanMoreThanOnceIDs are the request ids whose handler ran more than once.
func (r RetriesReport) RanMoreThanOnceIDs() []string {
	var ids []string
	for _, h := range r.Requests {
		if h.RanMoreThanOnce {
			ids = append(ids, h.RequestID)
		}
	}
	return ids
}

// ranHandler: the record is of an invocation whose handler ran (a fenced
// one was killed while running, so its effect may have happened).
func ranHandler(r api.Record) bool {
	if r.Replayed {
		return false
	}
	switch r.Outcome {
	case api.OutcomeOK, api.OutcomeError, api.OutcomeTimeout, api.OutcomeFenced:
		return true
	}
	return false
}

// answered: the record's success reached whoever waited for it. A
// duplicate delivery's answer goes nowhere, and crash-after-handler and
// drop-response lose an ok result.
func answered(r api.Record) bool {
	if r.Outcome != api.OutcomeOK || r.Trigger == api.TriggerDuplicate {
		return false
	}
	return r.Fault != wire.FaultCrashAfterHandler && r.Fault != wire.FaultDropResponse
}

func asyncTrigger(t string) bool {
	return t == api.TriggerEvent || t == api.TriggerRetry || t == api.TriggerRedrive
}

func outcomeText(r api.Record) string {
	s := r.Outcome
	if s == "" {
		s = "?"
	}
	switch {
	case r.Replayed:
		s += "(replayed)"
	case r.Trigger == api.TriggerDuplicate:
		s += "(duplicate)"
	}
	if r.Fault != "" {
		s += "[" + r.Fault + "]"
	}
	return s
}

// BuildRetriesReport aggregates records (any order; one function's or
// several) and the dead letters of the same functions.
func BuildRetriesReport(recs []api.Record, dls []api.DeadLetter) RetriesReport {
	sorted := append([]api.Record(nil), recs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].ReceivedNs != sorted[j].ReceivedNs {
			return sorted[i].ReceivedNs < sorted[j].ReceivedNs
		}
		return sorted[i].Attempt < sorted[j].Attempt
	})
	byID := map[string][]api.Record{}
	var order []string
	for _, r := range sorted {
		if r.RequestID == "" {
			continue
		}
		if _, ok := byID[r.RequestID]; !ok {
			order = append(order, r.RequestID)
		}
		byID[r.RequestID] = append(byID[r.RequestID], r)
	}
	// The latest dead letter of each request: a redriven event may have
	// been dead-lettered more than once.
	dead := map[string]api.DeadLetter{}
	for _, d := range dls {
		if cur, ok := dead[d.RequestID]; !ok || d.DeadLetteredNs > cur.DeadLetteredNs {
			dead[d.RequestID] = d
		}
	}
	for _, d := range dls {
		if _, ok := byID[d.RequestID]; !ok {
			// Dead-lettered without a record: aged out or refused before
			// any delivery (reserved concurrency 0).
			byID[d.RequestID] = nil
			order = append(order, d.RequestID)
		}
	}

	rep := RetriesReport{Summary: RetriesSummary{Faults: map[string]int{}}}
	for _, id := range order {
		rs := byID[id]
		h := RequestHistory{RequestID: id, Attempts: len(rs), Outcomes: []string{}}
		var lastAnswer, last int64
		async := false
		for _, r := range rs {
			if h.Function == "" {
				h.Function, h.first = r.Function, r.ReceivedNs
			}
			h.Outcomes = append(h.Outcomes, outcomeText(r))
			if ranHandler(r) {
				h.Runs++
			}
			if r.Replayed {
				h.Replayed++
			}
			if answered(r) {
				lastAnswer = r.ReceivedNs
			}
			last = max(last, r.ReceivedNs)
			async = async || asyncTrigger(r.Trigger)
			if r.Fault != "" && (r.Fault != wire.FaultDuplicateDelivery || r.Trigger != api.TriggerDuplicate) {
				if h.Faults == nil {
					h.Faults = map[string]int{}
				}
				h.Faults[r.Fault]++
				rep.Summary.Faults[r.Fault]++
			}
		}
		d, isDead := dead[id]
		if isDead {
			h.DeadLetter = d.Condition
			if h.Function == "" {
				h.Function, h.first = d.Function, d.EnqueuedNs
			}
		}
		switch {
		case lastAnswer != 0 && (!isDead || lastAnswer > d.DeadLetteredNs):
			h.State = StateSucceeded
		case isDead && last > d.DeadLetteredNs:
			h.State = StateInFlight // redriven after it was dead-lettered
		case isDead:
			h.State = StateDeadLettered
		case async:
			h.State = StateInFlight
		default:
			h.State = StateFailed
		}
		h.RanMoreThanOnce = h.Runs > 1
		rep.Requests = append(rep.Requests, h)

		s := &rep.Summary
		s.Requests++
		switch h.State {
		case StateSucceeded:
			s.Succeeded++
		case StateDeadLettered:
			s.DeadLettered++
		case StateInFlight:
			s.InFlight++
		case StateFailed:
			s.Failed++
		}
		if h.RanMoreThanOnce {
			s.RanMoreThanOnce++
		}
		s.ReplayedDuplicates += h.Replayed
	}
	sort.SliceStable(rep.Requests, func(i, j int) bool { return rep.Requests[i].first < rep.Requests[j].first })
	return rep
}

// FaultsText renders fault counts as "crash-after-handler=3 drop-response=1"
// (sorted), or "-".
func FaultsText(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, " ")
}

// RetriesReport reads the records kept since since ("all", a duration or
// an RFC 3339 time; see ParseSince) of function (every function when
// empty) and the dead letters, and aggregates them.
func (c *Client) RetriesReport(ctx context.Context, function, since string) (RetriesReport, error) {
	if since == "" {
		since = "all"
	}
	var recs []api.Record
	err := c.QueryRecords(ctx, RecordsQuery{Function: function, Since: since}, func(r api.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return RetriesReport{}, err
	}
	dls, err := c.DeadLetters(ctx, function)
	if err != nil {
		return RetriesReport{}, err
	}
	return BuildRetriesReport(recs, deadLettersSince(dls, recs, since, time.Now())), nil
}

// deadLettersSince keeps the dead letters the window covers: those of
// requests with records in it, and those dead-lettered since its start
// (the dead-letter stream keeps two weeks, the records one day).
func deadLettersSince(dls []api.DeadLetter, recs []api.Record, since string, now time.Time) []api.DeadLetter {
	var from time.Time
	if d, err := time.ParseDuration(since); err == nil {
		from = now.Add(-d)
	} else if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		from = t
	} else {
		return dls
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.RequestID] = true
	}
	var out []api.DeadLetter
	for _, d := range dls {
		if seen[d.RequestID] || d.DeadLetteredNs >= from.UnixNano() {
			out = append(out, d)
		}
	}
	return out
}
