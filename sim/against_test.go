package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// virtualClock never sleeps: waiting moves its time forward.
type virtualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *virtualClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
	return ctx.Err()
}

// fakeGateway speaks the part of the Lambda API --against uses: the first
// invocation of each function is cold, "limited" is always throttled, and
// "broken" answers a service error.
type fakeGateway struct {
	mu       sync.Mutex
	created  map[string]api.CreateFunctionInput
	seen     map[string]bool
	payloads []string
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.URL.Path == api.PathFunctions && r.Method == http.MethodPost {
		var in api.CreateFunctionInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Runtime != "synthetic" || in.Coldstart == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if _, ok := g.created[in.FunctionName]; ok {
			w.Header().Set(api.HeaderErrorType, "ResourceConflictException")
			w.WriteHeader(http.StatusConflict)
			return
		}
		g.created[in.FunctionName] = in
		w.WriteHeader(http.StatusCreated)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, api.PathFunctions+"/")
	name, ok2 := strings.CutSuffix(name, "/invocations")
	if !ok || !ok2 || r.Method != http.MethodPost {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var body struct {
		DurationMs float64 `json:"duration_ms"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	g.payloads = append(g.payloads, name)
	switch name {
	case "limited":
		w.Header().Set(api.HeaderErrorType, "TooManyRequestsException")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "broken":
		w.Header().Set(api.HeaderErrorType, "ServiceException")
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	cold := !g.seen[name]
	g.seen[name] = true
	init := 0.0
	if cold {
		init = 180
	}
	w.Header().Set(api.HeaderCold, map[bool]string{true: "true", false: "false"}[cold])
	w.Header().Set(api.HeaderInitMs, "180")
	if !cold {
		w.Header().Set(api.HeaderInitMs, "0")
	}
	w.Header().Set(api.HeaderDurationMs, jsonNum(body.DurationMs))
	w.Header().Set(api.HeaderBilledMs, jsonNum(init+body.DurationMs))
	w.Write([]byte(`null`))
}

func jsonNum(x float64) string { b, _ := json.Marshal(x); return string(b) }

func TestReplayAgainstGateway(t *testing.T) {
	g := &fakeGateway{created: map[string]api.CreateFunctionInput{"f": {}}, seen: map[string]bool{}}
	srv := httptest.NewServer(g)
	defer srv.Close()
	tr := &Trace{Functions: []Function{{Name: "f"}, {Name: "limited"}, {Name: "broken"}, {Name: "g", MemoryMB: 1024}}}
	for i := 0; i < 40; i++ {
		tr.Events = append(tr.Events, Event{T: float64(i) * 0.5, DurMs: 80, Fn: int32(i % 4)})
	}
	clk := &virtualClock{now: time.Unix(1000, 0)}
	m, err := Replay(context.Background(), tr, AgainstConfig{URL: srv.URL, Clock: clk, ColdStart: "180ms", KeepAlive: "600s", Handler: "80ms"})
	if err != nil {
		t.Fatal(err)
	}
	tot := m.Total
	if tot.Sent != 40 || tot.Cold != 2 || tot.Warm != 18 || tot.Throttles != 10 || tot.Errors != 10 || tot.ErrorTypes["ServiceException"] != 10 {
		t.Fatalf("measured %+v", tot)
	}
	if tot.BilledMs != 20*80+2*180 || tot.P99Ms != 260 || tot.P50Ms != 80 {
		t.Fatalf("billed %v, p50 %v, p99 %v", tot.BilledMs, tot.P50Ms, tot.P99Ms)
	}
	if got := clk.Now().Sub(time.Unix(1000, 0)); got != 19500*time.Millisecond {
		t.Fatalf("replay took %v of virtual time, want the trace's 19.5 s", got)
	}
	if g.created["g"].MemorySize != 1024 || g.created["g"].Coldstart.ColdStart != "180ms" || len(m.Notes) != 1 {
		t.Fatalf("created %+v, notes %v", g.created["g"], m.Notes)
	}
	var out bytes.Buffer
	sim := &Result{Total: FunctionResult{Invocations: 40, Cold: 2, Warm: 38}}
	WriteComparison(&out, sim, m)
	for _, want := range []string{"cold starts", "F2: measured cold starts are within 5%", "note: function f exists"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("comparison lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReplayCreateFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderErrorType, "InvalidParameterValueException")
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	tr := &Trace{Functions: []Function{{Name: "f"}}, Events: []Event{{T: 0, DurMs: 1}}}
	_, err := Replay(context.Background(), tr, AgainstConfig{URL: srv.URL, Clock: &virtualClock{}})
	if err == nil || !strings.Contains(err.Error(), "InvalidParameterValueException") {
		t.Fatalf("err = %v, want the gateway's error type", err)
	}
}
