package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
)

// TestTopOncePrintsOneFrame serves the two gateway endpoints top reads and
// checks that one frame carries each number it was given.
func TestTopOncePrintsOneFrame(t *testing.T) {
	now := time.Now()
	series := gateway.Series{Leader: "p2", Quorum: true,
		Nodes: []api.Node{{ID: "p1", Role: "placement", State: "follower"}, {ID: "p2", Role: "placement", State: "leader"}, {ID: "w1", Role: "worker", State: "dead"}, {ID: "w2", Role: "worker", State: "alive"}},
		Points: []gateway.SeriesPoint{{TimeMs: now.UnixMilli(), Functions: map[string]gateway.FunctionPoint{
			"hello": {Invocations: 42.5, Cold: 2.5, Warm: 40, P50Ms: 1.25, P99Ms: 9.75, Throttles: 3, Errors: 1, Concurrency: 7, Limit: 10, TotalInvocations: 1234, TotalThrottles: 56},
		}}}}
	tl := gateway.TimelinePage{Next: 2, Events: []gateway.TimelineEvent{
		{Seq: 1, TimeMs: now.UnixMilli(), Kind: gateway.EventDeploy, Function: "hello", Detail: "$LATEST changed (revision 2)"},
		{Seq: 2, TimeMs: now.UnixMilli(), Kind: gateway.EventNodeDown, Node: "w1", Detail: "worker dead"},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case gateway.PathSeries:
			writeTestJSON(t, w, series)
		case gateway.PathTimeline:
			writeTestJSON(t, w, tl)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"top", "--once", "--gateway", srv.URL}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	frame := out.String()
	for _, want := range []string{
		"placement leader p2 (quorum)",
		"placement 2/2", "worker 1/2", "down: w1 (dead)",
		"hello", "42.5", "2.5", "40.0", "1.25", "9.75", "3.0", "1.0", "7/10", "1234", "56",
		"node_down w1: worker dead", "deploy hello: $LATEST changed (revision 2)",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q:\n%s", want, frame)
		}
	}
	// Newest event first.
	if strings.Index(frame, "node_down") > strings.Index(frame, "deploy hello") {
		t.Errorf("events not newest first:\n%s", frame)
	}
}

func TestTopOnceFailsWithoutGateway(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"top", "--once", "--gateway", url}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "unreachable") {
		t.Fatalf("stderr %q does not say the gateway is unreachable", errb.String())
	}
}

func TestTopNoQuorumIsSaid(t *testing.T) {
	m := topModel{src: &topSource{base: "http://gw"}, events: 3, frame: topFrame{at: time.Now(), series: gateway.Series{Quorum: false}}}
	if v := m.View(); !strings.Contains(v, "NO QUORUM") || !strings.Contains(v, "(no functions yet)") || !strings.Contains(v, "(none)") {
		t.Fatalf("view without quorum, functions or events:\n%s", v)
	}
}

func writeTestJSON(t *testing.T, w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := jsonEncode(w, v); err != nil {
		t.Error(err)
	}
}

func jsonEncode(w http.ResponseWriter, v any) error { return json.NewEncoder(w).Encode(v) }
