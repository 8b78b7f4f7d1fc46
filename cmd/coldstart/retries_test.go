package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/wire"
)

// rec is a record of request id at time t (ns) of function f.
func rec(id string, t int64, attempt int, trigger, outcome, fault string) api.Record {
	return api.Record{RequestID: id, Function: "f", ReceivedNs: t, Attempt: attempt, Trigger: trigger, Outcome: outcome, Fault: fault}
}

func replayed(r api.Record) api.Record { r.Replayed = true; return r }

const (
	trEv, trRetry, trRedrive, trDup, trSync = api.TriggerEvent, api.TriggerRetry, api.TriggerRedrive, api.TriggerDuplicate, api.TriggerSync
	ok, ferr, tout                          = api.OutcomeOK, api.OutcomeError, api.OutcomeTimeout
)

// TestRetriesReportCases: each request's history, alone, gives its
// attempts, runs, state and outcomes.
func TestRetriesReportCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recs     []api.Record
		dls      []api.DeadLetter
		attempts int
		runs     int
		state    string
		outcomes string
		faults   map[string]int
	}{
		{"clean event", []api.Record{rec("a", 1, 1, trEv, ok, "")}, nil, 1, 1, client.StateSucceeded, "ok", nil},
		{"crash-after-handler then ok: ran twice", []api.Record{rec("a", 2, 2, trRetry, ok, ""), rec("a", 1, 1, trEv, ok, wire.FaultCrashAfterHandler)}, nil,
			2, 2, client.StateSucceeded, "ok[crash-after-handler] > ok", map[string]int{wire.FaultCrashAfterHandler: 1}},
		{"crash then replayed: ran once", []api.Record{rec("a", 1, 1, trEv, ok, wire.FaultCrashAfterHandler), replayed(rec("a", 2, 2, trRetry, ok, ""))}, nil,
			2, 1, client.StateSucceeded, "ok[crash-after-handler] > ok(replayed)", map[string]int{wire.FaultCrashAfterHandler: 1}},
		{"drop-response, retry not yet recorded", []api.Record{rec("a", 1, 1, trEv, ok, wire.FaultDropResponse)}, nil,
			1, 1, client.StateInFlight, "ok[drop-response]", map[string]int{wire.FaultDropResponse: 1}},
		{"timeout-after-effect then ok", []api.Record{rec("a", 1, 1, trEv, tout, wire.FaultTimeoutAfterEffect), rec("a", 2, 2, trRetry, ok, "")}, nil,
			2, 2, client.StateSucceeded, "timeout[timeout-after-effect] > ok", map[string]int{wire.FaultTimeoutAfterEffect: 1}},
		{"duplicate-delivery: one fault, two runs", []api.Record{rec("a", 1, 1, trEv, ok, wire.FaultDuplicateDelivery), rec("a", 1, 1, trDup, ok, wire.FaultDuplicateDelivery)}, nil,
			2, 2, client.StateSucceeded, "ok[duplicate-delivery] > ok(duplicate)[duplicate-delivery]", map[string]int{wire.FaultDuplicateDelivery: 1}},
		{"only the duplicate answered: still in flight", []api.Record{rec("a", 1, 1, trDup, ok, wire.FaultDuplicateDelivery), rec("a", 2, 1, trEv, api.OutcomeRejected, wire.FaultDuplicateDelivery)}, nil,
			2, 1, client.StateInFlight, "ok(duplicate)[duplicate-delivery] > rejected[duplicate-delivery]", map[string]int{wire.FaultDuplicateDelivery: 1}},
		{"error-before then ok: ran once", []api.Record{rec("a", 1, 1, trEv, api.OutcomeInjected, wire.FaultErrorBefore), rec("a", 2, 2, trRetry, ok, "")}, nil,
			2, 1, client.StateSucceeded, "injected[error-before] > ok", map[string]int{wire.FaultErrorBefore: 1}},
		{"throttled then ok", []api.Record{rec("a", 1, 1, trEv, api.OutcomeThrottled, ""), rec("a", 2, 2, trRetry, ok, "")}, nil,
			2, 1, client.StateSucceeded, "throttled > ok", nil},
		{"fenced then ok: the killed run counts", []api.Record{rec("a", 1, 1, trEv, api.OutcomeFenced, ""), rec("a", 2, 2, trRetry, ok, "")}, nil,
			2, 2, client.StateSucceeded, "fenced > ok", nil},
		{"poison: dead-lettered", []api.Record{rec("a", 1, 1, trEv, ferr, ""), rec("a", 2, 2, trRetry, ferr, ""), rec("a", 3, 3, trRetry, ferr, "")},
			[]api.DeadLetter{{RequestID: "a", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 4}},
			3, 3, client.StateDeadLettered, "function_error > function_error > function_error", nil},
		{"redriven and succeeded", []api.Record{rec("a", 1, 1, trEv, ferr, ""), rec("a", 5, 1, trRedrive, ok, "")},
			[]api.DeadLetter{{RequestID: "a", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 4}},
			2, 2, client.StateSucceeded, "function_error > ok", nil},
		{"redriven, failing again", []api.Record{rec("a", 1, 1, trEv, ferr, ""), rec("a", 5, 1, trRedrive, ferr, "")},
			[]api.DeadLetter{{RequestID: "a", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 4}},
			2, 2, client.StateInFlight, "function_error > function_error", nil},
		{"dead-lettered twice, the last after the redrive", []api.Record{rec("a", 1, 1, trEv, ferr, ""), rec("a", 5, 1, trRedrive, ferr, "")},
			[]api.DeadLetter{{RequestID: "a", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 4}, {RequestID: "a", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 6}},
			2, 2, client.StateDeadLettered, "function_error > function_error", nil},
		{"aged out without a record", nil, []api.DeadLetter{{RequestID: "a", Function: "f", Condition: "EventAgeExceeded", DeadLetteredNs: 4}},
			0, 0, client.StateDeadLettered, "", nil},
		{"sync error: failed", []api.Record{rec("a", 1, 1, trSync, ferr, "")}, nil, 1, 1, client.StateFailed, "function_error", nil},
		{"sync crash-after-handler: failed though it ran", []api.Record{rec("a", 1, 1, trSync, ok, wire.FaultCrashAfterHandler)}, nil,
			1, 1, client.StateFailed, "ok[crash-after-handler]", map[string]int{wire.FaultCrashAfterHandler: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := client.BuildRetriesReport(tc.recs, tc.dls)
			if len(rep.Requests) != 1 {
				t.Fatalf("%d requests: %+v", len(rep.Requests), rep.Requests)
			}
			h := rep.Requests[0]
			if h.RequestID != "a" || h.Function != "f" || h.Attempts != tc.attempts || h.Runs != tc.runs || h.State != tc.state ||
				strings.Join(h.Outcomes, " > ") != tc.outcomes || h.RanMoreThanOnce != (tc.runs > 1) {
				t.Fatalf("got %+v\nwant attempts %d runs %d state %q outcomes %q", h, tc.attempts, tc.runs, tc.state, tc.outcomes)
			}
			if len(tc.faults) > 0 && !reflect.DeepEqual(h.Faults, tc.faults) || len(tc.faults) == 0 && len(h.Faults) > 0 {
				t.Fatalf("faults %v, want %v", h.Faults, tc.faults)
			}
			if !reflect.DeepEqual(rep.Summary.Faults, h.Faults) && (len(h.Faults) > 0 || len(rep.Summary.Faults) > 0) {
				t.Fatalf("summary faults %v, request's %v", rep.Summary.Faults, h.Faults)
			}
		})
	}
}

// mixed is one function's history: a clean event, a re-run, a replay, a
// dead letter and one still in flight.
func mixed() ([]api.Record, []api.DeadLetter) {
	recs := []api.Record{
		rec("clean", 10, 1, trEv, ok, ""),
		rec("rerun", 20, 1, trEv, ok, wire.FaultCrashAfterHandler),
		rec("replay", 30, 1, trEv, ok, wire.FaultCrashAfterHandler),
		rec("poison", 40, 1, trEv, ferr, ""),
		rec("rerun", 50, 2, trRetry, ok, ""),
		replayed(rec("replay", 60, 2, trRetry, ok, "")),
		rec("poison", 70, 2, trRetry, ferr, ""),
		rec("poison", 80, 3, trRetry, ferr, ""),
		rec("waiting", 90, 1, trEv, ok, wire.FaultDropResponse),
	}
	return recs, []api.DeadLetter{{RequestID: "poison", Function: "f", Condition: "RetriesExhausted", DeadLetteredNs: 85}}
}

func TestRetriesReportSummary(t *testing.T) {
	recs, dls := mixed()
	rep := client.BuildRetriesReport(recs, dls)
	var ids []string
	for _, h := range rep.Requests {
		ids = append(ids, h.RequestID)
	}
	if want := []string{"clean", "rerun", "replay", "poison", "waiting"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("order %v, want %v (first seen)", ids, want)
	}
	want := client.RetriesSummary{Requests: 5, Succeeded: 3, DeadLettered: 1, InFlight: 1, RanMoreThanOnce: 2, ReplayedDuplicates: 1,
		Faults: map[string]int{wire.FaultCrashAfterHandler: 2, wire.FaultDropResponse: 1}}
	if !reflect.DeepEqual(rep.Summary, want) {
		t.Fatalf("summary %+v\nwant %+v", rep.Summary, want)
	}
	if got := rep.RanMoreThanOnceIDs(); !reflect.DeepEqual(got, []string{"rerun", "poison"}) {
		t.Fatalf("ran more than once: %v", got)
	}
	if empty := client.BuildRetriesReport(nil, nil); empty.Summary.Requests != 0 || len(empty.Requests) != 0 {
		t.Fatalf("empty: %+v", empty)
	}
}

// TestRetriesCommand: the command reads the kept records (since=all, the
// function's) and the dead letters from the gateway and prints the table,
// the summary, --reruns and --json.
func TestRetriesCommand(t *testing.T) {
	recs, dls := mixed()
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case api.PathRecords:
			queries = append(queries, r.URL.RawQuery)
			enc := json.NewEncoder(w)
			for _, rc := range recs {
				enc.Encode(rc)
			}
		case api.PathDLQ:
			json.NewEncoder(w).Encode(map[string]any{"DeadLetters": dls})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	t.Setenv("COLDSTART_GATEWAY", srv.URL)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := cli("retries", "report", "f")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if len(queries) != 1 || !strings.Contains(queries[0], "since=all") || !strings.Contains(queries[0], "function=f") || strings.Contains(queries[0], "follow") {
		t.Fatalf("records queries %v", queries)
	}
	for _, s := range []string{"rerun", "2!", "ok[crash-after-handler] > ok", "ok(replayed)", "dead-lettered (RetriesExhausted)", "in flight",
		"RAN MORE THAN ONCE", "crash-after-handler=2 drop-response=1"} {
		if !strings.Contains(out, s) {
			t.Fatalf("no %q in:\n%s", s, out)
		}
	}
	_, out, _ = cli("retries", "report", "f", "--reruns")
	if !strings.Contains(out, "rerun") || !strings.Contains(out, "poison") || strings.Contains(out, "clean") || strings.Contains(out, "waiting") {
		t.Fatalf("--reruns:\n%s", out)
	}
	_, out, _ = cli("retries", "report", "f", "--json", "--since", "10m")
	var rep client.RetriesReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Summary.RanMoreThanOnce != 2 || len(rep.Requests) != 5 {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if !strings.Contains(queries[len(queries)-1], "since=10m") {
		t.Fatalf("--since 10m: query %q", queries[len(queries)-1])
	}
	for _, bad := range [][]string{{"retries"}, {"retries", "report", "a", "b"}, {"retries", "report", "--since", "yesterday"}} {
		if code, _, _ := cli(bad...); code != 2 {
			t.Errorf("coldstart %v: exit %d, want 2", bad, code)
		}
	}
}
