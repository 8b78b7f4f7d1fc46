package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// fakeGateway follows the gateway contract for what `coldstart load` uses:
// GetFunction, Invoke (the first 3 requests cold, every 10th throttled) and
// the records stream (one record per served invocation).
type fakeGateway struct {
	srv     *httptest.Server
	n       atomic.Int64
	records chan api.Record
	mu      sync.Mutex
	paths   []string
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{records: make(chan api.Record, 10000)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2015-03-31/functions/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "hello" {
			w.Header().Set(api.HeaderErrorType, "ResourceNotFoundException")
			w.WriteHeader(404)
			io.WriteString(w, `{"Type":"User","Message":"Function not found"}`)
			return
		}
		json.NewEncoder(w).Encode(api.GetFunctionOutput{Configuration: api.FunctionConfiguration{FunctionName: "hello"}})
	})
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.paths = append(g.paths, r.URL.RequestURI())
		g.mu.Unlock()
		n := g.n.Add(1)
		if n%10 == 0 {
			w.Header().Set(api.HeaderErrorType, "TooManyRequestsException")
			w.WriteHeader(429)
			io.WriteString(w, `{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`)
			return
		}
		cold := n <= 3
		h := w.Header()
		h.Set(api.HeaderCold, fmt.Sprint(cold))
		h.Set(api.HeaderDurationMs, "1")
		if cold {
			h.Set(api.HeaderInitMs, "5")
		}
		sb := fmt.Sprintf("sb-%d", n%3)
		h.Set(api.HeaderSandbox, sb)
		now := time.Now().UnixNano()
		g.records <- api.Record{RequestID: fmt.Sprint(n), Account: "a", Function: "hello", Version: "$LATEST",
			Sandbox: sb, ReceivedNs: now, StartNs: now, EndNs: now + 1e6, Cold: cold, Outcome: api.OutcomeOK}
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("GET /coldstart/v1/records", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case rec := <-g.records:
				enc.Encode(rec)
				w.(http.Flusher).Flush()
			}
		}
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := Main(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestMainJSON(t *testing.T) {
	g := newFakeGateway(t)
	code, out, errs := runMain(t, "--function", "hello", "--rate", "100", "--duration", "500ms",
		"--gateway", g.srv.URL, "--json", "--qualifier", "live")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if errs != "" {
		t.Errorf("stderr not a terminal and no --progress: want it quiet, got %q", errs)
	}
	var s Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	if s.Invocations != 50 || s.Throttled != 5 || s.OK != 45 || s.Cold != 3 || s.Warm != 42 {
		t.Fatalf("summary %+v", s)
	}
	if s.ThrottledByReason["ConcurrentInvocationLimitExceeded"] != 5 || s.InitMs.N != 3 || s.Latency.N != 45 {
		t.Fatalf("summary %+v", s)
	}
	if s.AvoidableColdStarts != nil {
		t.Fatal("no --records: no avoidable count")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !strings.HasSuffix(g.paths[0], "/hello/invocations?Qualifier=live") {
		t.Fatalf("invoked %q", g.paths[0])
	}
}

func TestMainTableProgressAndRecords(t *testing.T) {
	g := newFakeGateway(t)
	code, out, errs := runMain(t, "hello", "--rate", "100", "--duration", "500ms", "--shape", "spike",
		"--gateway", g.srv.URL, "--progress", "--records", "--slack", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"coldstart load: hello, spike", "invocations", "throttled", "ConcurrentInvocationLimitExceeded", "avoidable cold", "p99"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Forced progress on a non-terminal: plain lines, the last one final.
	if !strings.Contains(errs, "sent ") || strings.Contains(errs, "\r") {
		t.Errorf("progress on a non-terminal: %q", errs)
	}
	if !strings.Contains(out, "records)") {
		t.Errorf("records count missing:\n%s", out)
	}
}

func TestMainUsage(t *testing.T) {
	code, out, _ := runMain(t, "--help")
	if code != 0 || !strings.Contains(out, "Example:") || !strings.Contains(out, "coldstart load --function hello") || !strings.Contains(out, "-concurrency") {
		t.Fatalf("--help: %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"--rate", "10"},    // no function
		{"--function", "f"}, // no rate
		{"--function", "f", "--rate", "10", "--shape", "zigzag"},
		{"--function", "f", "--rate", "10", "--duration", "0s"},
		{"--function", "f", "--rate", "10", "--bogus"},
		{"--function", "f", "--rate", "10", "extra", "args"},
	} {
		if code, _, errs := runMain(t, args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errs)
		}
	}
}

func TestMainPreflight(t *testing.T) {
	g := newFakeGateway(t)
	code, _, errs := runMain(t, "--function", "nope", "--rate", "10", "--duration", "1s", "--gateway", g.srv.URL)
	if code != 1 || !strings.Contains(errs, `function "nope" not found`) {
		t.Fatalf("missing function: %d %q", code, errs)
	}
	if g.n.Load() != 0 {
		t.Fatal("load was sent to a missing function")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close()
	code, _, errs = runMain(t, "--function", "hello", "--rate", "10", "--duration", "1s", "--gateway", dead)
	if code != 1 || !strings.Contains(errs, "cannot reach the gateway") {
		t.Fatalf("dead gateway: %d %q", code, errs)
	}
}

func TestBaseName(t *testing.T) {
	for in, want := range map[string]string{
		"hello":         "hello",
		"hello:live":    "hello",
		"hello:$LATEST": "hello",
		"arn:aws:lambda:us-east-1:000000000000:function:hello":   "hello",
		"arn:aws:lambda:us-east-1:000000000000:function:hello:3": "hello",
		"000000000000:function:hello":                            "hello",
	} {
		if got := baseName(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
