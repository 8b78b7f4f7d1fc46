package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/coldstart-dev/coldstart/internal/api"
)

func sampleStatus() api.Status {
	ten := 10
	return api.Status{
		Leader: "placement-2",
		Nodes: []api.Node{
			{ID: "worker-1", Role: "worker", Addr: "127.0.0.1:9201", State: "alive", Detail: "12 sandboxes"},
			{ID: "placement-1", Role: "placement", Addr: "127.0.0.1:9101", State: "follower"},
			{ID: "gateway-1", Role: "gateway", Addr: "127.0.0.1:9000", State: "alive"},
			{ID: "placement-2", Role: "placement", Addr: "127.0.0.1:9102", State: "leader"},
			{ID: "placement-3", Role: "placement", Addr: "127.0.0.1:9103", State: "dead"},
		},
		Accounts: []api.AccountStatus{{Account: "000000000000", Limit: 1000, Sandboxes: 40, InFlight: 250}},
		Functions: []api.FunctionStatus{
			{Account: "000000000000", Name: "zeta", Sandboxes: 10, Idle: 2, InFlight: 8, Reserved: &ten},
			{Account: "000000000000", Name: "alpha", Sandboxes: 30, Idle: 0, InFlight: 30},
		},
	}
}

func TestFormatStatus(t *testing.T) {
	var b bytes.Buffer
	st := sampleStatus()
	st.Workers = []api.WorkerStatus{{ID: "worker-1", Idle: 2, Busy: 1, Processes: 3, Limits: "rlimit+uid"}}
	st.Async = &api.AsyncStatus{Queued: 7, InFlight: 2, DeadLetters: 1}
	if err := FormatStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if lines[0] != "Leader: placement-2" {
		t.Fatalf("first line %q", lines[0])
	}
	// Nodes are grouped placement, gateway, worker; the leader is starred.
	order := []string{"placement-1 ", "placement-2 *", "placement-3 ", "gateway-1 ", "worker-1 "}
	last := -1
	for _, id := range order {
		i := strings.Index(out, id)
		if i < 0 || i < last {
			t.Fatalf("node %q missing or out of order:\n%s", id, out)
		}
		last = i
	}
	for _, want := range []string{
		"placement 2/3 up, gateway 1/1 up, worker 1/1 up",
		"IN-FLIGHT", "250", "1000", "25%",
		"RESERVED", "SANDBOX LIMITS", "rlimit+uid", "Async events: 7 queued, 2 in flight, 0 redelivered, 1 dead-lettered",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	// Functions sorted by name; reserved shown or "-".
	ia, iz := strings.Index(out, "alpha"), strings.Index(out, "zeta")
	if ia < 0 || iz < ia {
		t.Fatalf("functions not sorted:\n%s", out)
	}
	alphaLine := lineWith(out, "alpha")
	if !strings.HasSuffix(strings.TrimSpace(alphaLine), "-") {
		t.Errorf("alpha has no reserved concurrency, want '-': %q", alphaLine)
	}
	if f := strings.Fields(lineWith(out, "zeta")); !reflect.DeepEqual(f[2:], []string{"10", "2", "8", "10"}) {
		t.Errorf("zeta columns %v", f)
	}
}

func TestFormatStatusEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := FormatStatus(&b, api.Status{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Leader: none", "Nodes: none", "Accounts: none", "Functions: none"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func TestParseFlagsInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		pos     []string
		payload string
	}{
		{[]string{"fn", "--payload", "{}"}, []string{"fn"}, "{}"},
		{[]string{"--payload", "x", "fn"}, []string{"fn"}, "x"},
		{[]string{"a", "-payload=y", "b"}, []string{"a", "b"}, "y"},
		{[]string{"a", "--", "--payload"}, []string{"a", "--payload"}, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		p := fs.String("payload", "", "")
		pos, err := ParseFlags(fs, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || *p != tc.payload {
			t.Errorf("%v: pos %v payload %q err %v", tc.args, pos, *p, err)
		}
	}
}

// cliGateway answers invoke, status and records like the gateway.
func cliGateway(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.PathValue("name") {
		case "echo":
			w.Header().Set(api.HeaderCold, "true")
			w.Header().Set(api.HeaderRequestID, "rid-1")
			if r.Header.Get(api.HeaderLogType) == "Tail" {
				w.Header().Set(api.HeaderLogResult, base64.StdEncoding.EncodeToString([]byte("REPORT RequestId: rid-1")))
			}
			w.Write(body)
		case "fails":
			w.Header().Set(api.HeaderFunctionError, "Unhandled")
			io.WriteString(w, `{"errorMessage":"boom","errorType":"errorString"}`)
		case "busy":
			writeErr(w, 429, "TooManyRequestsException", `{"Type":"User","message":"Rate Exceeded.","Reason":"ConcurrentInvocationLimitExceeded"}`)
		default:
			writeErr(w, 404, "ResourceNotFoundException", `{"Type":"User","Message":"Function not found"}`)
		}
	})
	mux.HandleFunc("GET /coldstart/v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(sampleStatus())
	})
	mux.HandleFunc("GET /coldstart/v1/records", func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		for i := 0; i < 5; i++ {
			enc.Encode(rec("r" + string(rune('1'+i))))
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestInvokeMain(t *testing.T) {
	gw := cliGateway(t)
	ctx := ctxT(t)
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := InvokeMain(ctx, args, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := run("", "echo", "--gateway", gw, "--payload", `{"a":1}`, "-v", "--log")
	if code != 0 || out != "{\"a\":1}\n" || !strings.Contains(errs, "cold") || !strings.Contains(errs, "REPORT RequestId: rid-1") {
		t.Fatalf("echo: %d %q %q", code, out, errs)
	}
	if code, out, _ := run(`{"from":"stdin"}`, "--gateway", gw, "--payload", "-", "echo"); code != 0 || !strings.Contains(out, "stdin") {
		t.Fatalf("stdin payload: %d %q", code, out)
	}
	code, out, errs = run("", "fails", "--gateway", gw)
	if code != 1 || !strings.Contains(out, "boom") || !strings.Contains(errs, "FunctionError (Unhandled): errorString: boom") {
		t.Fatalf("function error: %d %q %q", code, out, errs)
	}
	code, out, errs = run("", "busy", "--gateway", gw)
	if code != 1 || out != "" || !strings.HasPrefix(errs, "TooManyRequestsException (ConcurrentInvocationLimitExceeded)") {
		t.Fatalf("throttle: %d %q %q", code, out, errs)
	}
	if code, _, errs := run("", "missing", "--gateway", gw); code != 1 || !strings.HasPrefix(errs, "ResourceNotFoundException") {
		t.Fatalf("missing: %d %q", code, errs)
	}
	if code, out, _ := run("", "--help"); code != 0 || !strings.Contains(out, "Example:") || !strings.Contains(out, "-payload") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, _ := run(""); code != 2 {
		t.Fatalf("no name: %d", code)
	}
	if code, _, _ := run("", "echo", "--bogus"); code != 2 {
		t.Fatalf("bad flag: %d", code)
	}
	// Unreachable gateway: a hint, not a stack of dial errors.
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close()
	if code, _, errs := run("", "echo", "--gateway", dead); code != 1 || !strings.Contains(errs, "cannot reach the gateway") {
		t.Fatalf("dead gateway: %d %q", code, errs)
	}
}

func TestStatusAndRecordsMain(t *testing.T) {
	gw := cliGateway(t)
	ctx := ctxT(t)
	var out, errb bytes.Buffer
	if code := StatusMain(ctx, []string{"--gateway", gw}, &out, &errb); code != 0 || !strings.Contains(out.String(), "placement-2 *") {
		t.Fatalf("status: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := StatusMain(ctx, []string{"--gateway", gw, "--json"}, &out, &errb); code != 0 {
		t.Fatalf("status --json: %d", code)
	}
	var st api.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Leader != "placement-2" {
		t.Fatalf("status json: %v %+v", err, st)
	}
	out.Reset()
	if code := RecordsMain(ctx, []string{"--gateway", gw, "--count", "3"}, &out, &errb); code != 0 {
		t.Fatalf("records: %d %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("records: %d lines: %q", len(lines), out.String())
	}
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"request_id", "account", "function", "version", "sandbox", "worker", "start_ns", "end_ns", "cold", "init_ms", "duration_ms", "billed_ms", "outcome"} {
			if _, ok := r[k]; !ok {
				t.Errorf("record line lacks %q: %s", k, l)
			}
		}
	}
	// Interrupted by the caller: exit 0, the lines so far printed.
	cctx, cancel := context.WithCancel(ctx)
	out.Reset()
	done := make(chan int)
	go func() {
		done <- RecordsMain(cctx, []string{"--gateway", gw}, &syncWriter{w: &out, onWrite: cancel}, &errb)
	}()
	if code := <-done; code != 0 {
		t.Fatalf("records interrupted: %d %s", code, errb.String())
	}
}

// syncWriter calls onWrite after the first write (used to interrupt a stream).
type syncWriter struct {
	w       io.Writer
	onWrite func()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.onWrite()
	return n, err
}

func TestFormatReplicas(t *testing.T) {
	for _, c := range []struct {
		name string
		rs   []api.Replica
		want string
	}{
		{"agree", []api.Replica{{ID: "p1", Term: 3, Applied: 40, Digest: "ab"}, {ID: "p2", Term: 3, Applied: 40, Digest: "ab"}}, "replicas agree\n"},
		{"lag", []api.Replica{{ID: "p1", Applied: 40, Digest: "ab"}, {ID: "p2", Applied: 38, Digest: "cd"}}, "some lag behind"},
		{"disagree", []api.Replica{{ID: "p1", Applied: 40, Digest: "ab"}, {ID: "p2", Applied: 40, Digest: "cd"}, {ID: "p3", Applied: 41, Digest: "ef"}}, "REPLICAS DISAGREE: different digests at applied index 40"},
		{"silent", []api.Replica{{ID: "p1", Applied: 40, Digest: "ab"}, {ID: "p2", Error: "no answer"}}, "no answer"},
	} {
		var b bytes.Buffer
		FormatReplicas(&b, c.rs)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%s: missing %q in:\n%s", c.name, c.want, b.String())
		}
	}
}
