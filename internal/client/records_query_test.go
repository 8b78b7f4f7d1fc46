package client

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// historyGateway answers the records endpoint as the gateway does: with
// since and without follow it ends after the kept records; otherwise it
// stays open. It remembers each request's query.
type historyGateway struct {
	mu      sync.Mutex
	queries []url.Values
}

func (h *historyGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	h.mu.Lock()
	h.queries = append(h.queries, q)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.Encode(rec("kept-1"))
	enc.Encode(rec("kept-2"))
	w.(http.Flusher).Flush()
	if q.Get("since") != "" && q.Get("follow") != "true" {
		return
	}
	enc.Encode(rec("new-1"))
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

func (h *historyGateway) last() url.Values {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.queries[len(h.queries)-1]
}

func TestQueryRecordsSendsTheQuery(t *testing.T) {
	h := &historyGateway{}
	c := newTestClient(t, h)
	var ids []string
	q := RecordsQuery{Function: "hello", RequestID: "r 1&x", Since: "10m"}
	if err := c.QueryRecords(ctxT(t), q, func(r api.Record) error { ids = append(ids, r.RequestID); return nil }); err != nil {
		t.Fatal(err)
	}
	// History without follow ends with the gateway's stream.
	if strings.Join(ids, ",") != "kept-1,kept-2" {
		t.Fatalf("records %q", ids)
	}
	want := url.Values{"function": {"hello"}, "request_id": {"r 1&x"}, "since": {"10m"}}
	if got := h.last(); got.Encode() != want.Encode() {
		t.Fatalf("query %v, want %v", got, want)
	}
	ids = nil
	q = RecordsQuery{Since: "all", Follow: true}
	if err := c.QueryRecords(ctxT(t), q, func(r api.Record) error {
		ids = append(ids, r.RequestID)
		if len(ids) == 3 {
			return ErrStop
		}
		return nil
	}); err != nil || strings.Join(ids, ",") != "kept-1,kept-2,new-1" {
		t.Fatalf("follow: %q %v", ids, err)
	}
	if got := h.last(); got.Encode() != "follow=true&since=all" {
		t.Fatalf("follow query %v", got)
	}
	// Follow means nothing without since: the live stream always follows.
	st, err := c.OpenRecordsQuery(ctxT(t), RecordsQuery{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if got := h.last(); len(got) != 0 {
		t.Fatalf("live query %v", got)
	}
	// OpenRecords is the live query of one function.
	st, err = c.OpenRecords(ctxT(t), "hello")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if got := h.last(); got.Encode() != "function=hello" {
		t.Fatalf("OpenRecords query %v", got)
	}
}

func TestParseSince(t *testing.T) {
	for _, ok := range []string{"all", "10m", "1h30m", "90s", "2026-12-01T11:00:00Z", "2026-12-01T12:30:00.123+01:00"} {
		if err := ParseSince(ok); err != nil {
			t.Errorf("ParseSince(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ALL", "yesterday", "-10m", "0s", "10", "2026-12-01", "12:00"} {
		if err := ParseSince(bad); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func TestRecordsMainFlags(t *testing.T) {
	h := &historyGateway{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := RecordsMain(ctxT(t), append([]string{"--gateway", srv.URL}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	for _, tc := range []struct {
		args  []string
		query string
		lines int
	}{
		{[]string{"--since", "10m"}, "since=10m", 2},
		{[]string{"--since", "2026-12-01T11:00:00Z", "--function", "hello"}, "function=hello&since=2026-12-01T11%3A00%3A00Z", 2},
		{[]string{"--since", "all", "--request-id", "abc"}, "request_id=abc&since=all", 2},
		{[]string{"--since=all", "--follow", "--count", "3"}, "follow=true&since=all", 3},
		{[]string{"--function", "hello", "--count", "1"}, "function=hello", 1},
	} {
		code, out, errs := run(tc.args...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", tc.args, code, errs)
			continue
		}
		if n := strings.Count(out, "\n"); n != tc.lines {
			t.Errorf("%v: %d lines: %q", tc.args, n, out)
		}
		if got := h.last().Encode(); got != tc.query {
			t.Errorf("%v: query %q, want %q", tc.args, got, tc.query)
		}
	}
	for _, bad := range []string{"yesterday", "-1h", "10"} {
		if code, _, errs := run("--since", bad); code != 2 || !strings.Contains(errs, "--since") {
			t.Errorf("--since %s: exit %d %q", bad, code, errs)
		}
	}
	if code, out, _ := run("--help"); code != 0 || !strings.Contains(out, "-since") || !strings.Contains(out, "-follow") || !strings.Contains(out, "-request-id") {
		t.Errorf("help: %d %q", code, out)
	}
}
