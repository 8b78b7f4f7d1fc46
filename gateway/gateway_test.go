package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natstest"
	"github.com/coldstart-dev/coldstart/wire"
)

func TestParseFunctionName(t *testing.T) {
	cases := []struct {
		raw, q     string
		acct, name string
		qual       string
		wantErr    bool
	}{
		{"hello", "", "", "hello", "", false},
		{"hello:$LATEST", "", "", "hello", "$LATEST", false},
		{"hello:prod", "", "", "hello", "prod", false},
		{"hello", "7", "", "hello", "7", false},
		{"000000000000:function:hello", "", "000000000000", "hello", "", false},
		{"arn:aws:lambda:us-east-1:000000000000:function:hello:live", "", "000000000000", "hello", "live", false},
		{"arn:aws:lambda:us-east-1:000000000000:function:hello:live", "other", "", "", "", true},
		{"", "", "", "", "", true},
		{"has space", "", "", "", "", true},
		{strings.Repeat("a", 65), "", "", "", "", true},
		{strings.Repeat("a", 300), "", "", "", "", true},
		{"hello", "bad qualifier!", "", "", "", true},
		{"arn:aws:lambda:us-east-1:12345:function:x", "", "", "", "", true},
	}
	for _, c := range cases {
		ref, err := ParseFunctionName(c.raw, c.q)
		if (err != nil) != c.wantErr {
			t.Errorf("ParseFunctionName(%q,%q) err=%v, want error %v", c.raw, c.q, err, c.wantErr)
			continue
		}
		if err == nil && (ref.Account != c.acct || ref.Name != c.name || ref.Qualifier != c.qual) {
			t.Errorf("ParseFunctionName(%q,%q) = %+v", c.raw, c.q, ref)
		}
	}
}

func FuzzParseFunctionName(f *testing.F) {
	for _, s := range []string{"hello", "hello:$LATEST", "arn:aws:lambda:us-east-1:000000000000:function:hello:live", "000000000000:function:x", "a:b:c", "%3A", "::::", "\x00"} {
		f.Add(s, "")
		f.Add(s, "1")
	}
	f.Fuzz(func(t *testing.T, raw, q string) {
		ref, err := ParseFunctionName(raw, q)
		if err != nil {
			return
		}
		if ref.Name == "" || len(ref.Name) > 64 || strings.ContainsAny(ref.Name, ": /") {
			t.Fatalf("accepted bad name %q from %q", ref.Name, raw)
		}
		// The bare-name fast path must agree with Lambda's full pattern.
		if m := fnPattern.FindStringSubmatch(raw); m == nil || m[10] != ref.Name {
			t.Fatalf("%q parsed as %q but the pattern gives %v", raw, ref.Name, m)
		}
	})
}

func FuzzCreateFunctionBody(f *testing.F) {
	for _, s := range []string{
		`{"FunctionName":"f","Runtime":"synthetic","MemorySize":512,"Timeout":3,"Coldstart":{"Duration":"80ms","ColdStart":"180ms"}}`,
		`{"FunctionName":"f","MemorySize":99999}`,
		`{"FunctionName":"f","Coldstart":{"Duration":"lognormal:1ms:1e308"}}`,
		`{"FunctionName":"f","Coldstart":{"KeepAlive":"-1s"}}`,
		`{"FunctionName":"", "Timeout": -1}`,
		`[]`, `null`, `{"FunctionName":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in api.CreateFunctionInput
		if json.Unmarshal(body, &in) != nil {
			return
		}
		fn, lerr := functionFromInput(DefaultAccount, in)
		if lerr != nil {
			if lerr.Status != http.StatusBadRequest || lerr.Type != "InvalidParameterValueException" {
				t.Fatalf("bad input answered %d %s", lerr.Status, lerr.Type)
			}
			return
		}
		if fn.MemoryMB < minMemory || fn.MemoryMB > maxMemory || fn.TimeoutMs < 1000 || fn.TimeoutMs > 900000 {
			t.Fatalf("accepted out-of-range function %+v", fn)
		}
		if _, err := newEntry(*fn); err != nil {
			t.Fatalf("accepted a function whose config does not build: %v", err)
		}
	})
}

// fakePlacer serves one function from a fixed snapshot and refuses writes.
type fakePlacer struct{ sn *wire.Snapshot }

func (f fakePlacer) Do(ctx context.Context, req wire.Request) (wire.Response, error) {
	return wire.Response{}, errors.Join(wire.ErrUnavailable, errors.New("fake: no leader"))
}
func (f fakePlacer) GatewayOp(ctx context.Context, gw, op string, req wire.Request) (wire.Response, error) {
	return f.Do(ctx, req)
}
func (f fakePlacer) Read(ctx context.Context) (*wire.Snapshot, error)       { return f.sn, nil }
func (f fakePlacer) ReadLeader(ctx context.Context) (*wire.Snapshot, error) { return f.sn, nil }
func (f fakePlacer) ReadNode(ctx context.Context, id string) (*wire.Snapshot, error) {
	return f.sn, nil
}

func startTestGateway(t *testing.T) *Gateway {
	nc := natstest.Conn(t)
	syn, _ := json.Marshal(api.SyntheticConfig{Duration: "1ms"})
	sn := &wire.Snapshot{Index: 1, Functions: []wire.Function{{Account: DefaultAccount, Name: "f", Runtime: "synthetic", MemoryMB: 128, TimeoutMs: 3000, Synthetic: syn}}}
	g, err := Start(Config{ID: "g", Listen: "127.0.0.1:0", NATS: nc, Placement: fakePlacer{sn}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g
}

func call(t *testing.T, method, url string, hdr map[string]string, body io.Reader) (*http.Response, api.ErrorBody) {
	req, _ := http.NewRequest(method, url, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &eb)
	return resp, eb
}

func TestInvokeErrorsAreTyped(t *testing.T) {
	g := startTestGateway(t)
	inv := g.URL() + "/2015-03-31/functions/"
	cases := []struct {
		name   string
		url    string
		hdr    map[string]string
		body   io.Reader
		status int
		etype  string
	}{
		{"unknown function", inv + "nope/invocations", nil, nil, 404, "ResourceNotFoundException"},
		{"other account", inv + "999999999999:function:f/invocations", nil, nil, 404, "ResourceNotFoundException"},
		{"unknown version", inv + "f/invocations?Qualifier=7", nil, nil, 404, "ResourceNotFoundException"},
		{"bad name", inv + "bad%20name/invocations", nil, nil, 400, "InvalidParameterValueException"},
		{"bad invocation type", inv + "f/invocations", map[string]string{api.HeaderInvocationType: "Sometimes"}, nil, 400, "InvalidParameterValueException"},
		{"too large", inv + "f/invocations", nil, bytes.NewReader(make([]byte, MaxSyncPayload+1)), 413, "RequestTooLargeException"},
		{"dry run", inv + "f/invocations", map[string]string{api.HeaderInvocationType: "DryRun"}, nil, 204, ""},
		// No worker holds a sandbox and placement is down: ServiceException.
		{"no quorum", inv + "f/invocations", nil, strings.NewReader(`{}`), 500, "ServiceException"},
		{"bad create body", g.URL() + "/2015-03-31/functions", nil, strings.NewReader(`{not json`), 400, "InvalidRequestContentException"},
		{"bad memory", g.URL() + "/2015-03-31/functions", nil, strings.NewReader(`{"FunctionName":"x","MemorySize":64}`), 400, "InvalidParameterValueException"},
	}
	for _, c := range cases {
		method := http.MethodPost
		resp, eb := call(t, method, c.url, c.hdr, c.body)
		if resp.StatusCode != c.status || resp.Header.Get(api.HeaderErrorType) != c.etype {
			t.Errorf("%s: %d %q, want %d %q (%+v)", c.name, resp.StatusCode, resp.Header.Get(api.HeaderErrorType), c.status, c.etype, eb)
			continue
		}
		if c.etype != "" && eb.Text() == "" {
			t.Errorf("%s: error body without message", c.name)
		}
		if resp.Header.Get(api.HeaderRequestID) == "" && strings.Contains(c.url, "invocations") {
			t.Errorf("%s: no request id", c.name)
		}
	}
}

func TestThrottleShape(t *testing.T) {
	rec := &recorder{h: http.Header{}}
	writeError(rec, errThrottle("ConcurrentInvocationLimitExceeded"))
	var eb api.ErrorBody
	json.Unmarshal(rec.body.Bytes(), &eb)
	if rec.status != 429 || rec.h.Get(api.HeaderErrorType) != "TooManyRequestsException" || eb.Reason != "ConcurrentInvocationLimitExceeded" || eb.Message == "" || rec.h.Get("Retry-After") == "" {
		t.Fatalf("429 shape: %d %v %s", rec.status, rec.h, rec.body.String())
	}
}

type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func TestDashboardIsServed(t *testing.T) {
	g := startTestGateway(t)
	for _, path := range []string{"/", "/dashboard"} {
		resp, err := http.Get(g.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "/coldstart/v1/status") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := http.Get(g.URL() + "/no/such/page"); resp.StatusCode != 404 {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
}

// grantingPlacer grants every cold start on a worker that is not there,
// and answers a cancel with the grant it released, as placement does.
type grantingPlacer struct {
	fakePlacer
	mu      sync.Mutex
	granted map[string]wire.Sandbox
}

func (p *grantingPlacer) GatewayOp(ctx context.Context, gw, op string, req wire.Request) (wire.Response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch op {
	case wire.OpCreateSandbox:
		c := req.Sandbox
		sb := wire.Sandbox{ID: c.ID, Account: c.Account, Function: c.Function, Version: c.Version, Worker: "gone", WorkerInc: 1, MemoryMB: 128, CreatedNs: time.Now().UnixNano()}
		p.granted[sb.ID] = sb
		return wire.Response{Grant: &wire.Grant{Sandbox: &sb}}, nil
	case wire.OpCancel:
		var out []wire.Sandbox
		for _, id := range req.Release {
			if sb, ok := p.granted[id]; ok {
				out = append(out, sb)
				delete(p.granted, id)
			}
		}
		return wire.Response{Cancelled: out}, nil
	}
	return wire.Response{}, nil
}

// A grant the gateway could not use (its worker is gone) is cancelled, and
// the capacity it held meanwhile is recorded: an abandoned record per
// grant, held from the grant to the cancel, so the checker counts it.
func TestAbandonedGrantIsRecorded(t *testing.T) {
	nc := natstest.Conn(t)
	recs := make(chan api.Record, 16)
	sub, err := nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		for _, r := range wire.SplitRecords(m.Data) {
			recs <- r
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	syn, _ := json.Marshal(api.SyntheticConfig{Duration: "1ms"})
	sn := &wire.Snapshot{Index: 1, Functions: []wire.Function{{Account: DefaultAccount, Name: "f", Runtime: "synthetic", MemoryMB: 128, TimeoutMs: 3000, Synthetic: syn}}}
	pl := &grantingPlacer{fakePlacer: fakePlacer{sn}, granted: map[string]wire.Sandbox{}}
	g, err := Start(Config{ID: "g", Listen: "127.0.0.1:0", NATS: nc, Placement: pl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	start := time.Now().UnixNano()
	resp, eb := call(t, http.MethodPost, g.URL()+"/2015-03-31/functions/f/invocations", nil, strings.NewReader(`{}`))
	if resp.StatusCode != 500 || resp.Header.Get(api.HeaderErrorType) != "ServiceException" {
		t.Fatalf("invoke with the granted worker gone: %d %+v", resp.StatusCode, eb)
	}
	reqID := resp.Header.Get(api.HeaderRequestID)
	// The cold start was placed twice (once more after the first worker
	// was not there): two grants, two cancels, two records.
	seen := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for len(seen) < 2 {
		select {
		case r := <-recs:
			if r.Outcome != api.OutcomeAbandoned {
				continue
			}
			if r.RequestID != reqID || r.Worker != "gone" || r.Function != "f" || r.Gateway != "g" || r.Cold || r.BilledMs != 0 {
				t.Fatalf("abandoned record %+v (request %s)", r, reqID)
			}
			if r.GrantedNs < start || r.ReceivedNs != r.GrantedNs || r.EndNs < r.GrantedNs || r.ReleasedNs < r.EndNs || r.StartNs != r.EndNs {
				t.Fatalf("abandoned record times: %+v", r)
			}
			seen[r.Sandbox] = true
		case <-deadline:
			t.Fatalf("abandoned records: have %d, want 2", len(seen))
		}
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.granted) != 0 {
		t.Fatalf("grants left uncancelled: %v", pl.granted)
	}
}
