package testcluster_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

type invokeResult struct {
	Status    int
	ErrorType string
	Body      api.ErrorBody
	Payload   []byte
	Cold      bool
	Worker    string
	Sandbox   string
	RequestID string
	Latency   time.Duration
}

func invoke(t testing.TB, url, fn string, payload string) invokeResult {
	start := time.Now()
	resp, err := http.Post(url+"/2015-03-31/functions/"+fn+"/invocations", "application/octet-stream", bytes.NewBufferString(payload))
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := invokeResult{Status: resp.StatusCode, ErrorType: resp.Header.Get(api.HeaderErrorType), Payload: b, Cold: resp.Header.Get(api.HeaderCold) == "true", Worker: resp.Header.Get(api.HeaderWorker), Sandbox: resp.Header.Get(api.HeaderSandbox), RequestID: resp.Header.Get(api.HeaderRequestID), Latency: time.Since(start)}
	if resp.StatusCode >= 300 {
		json.Unmarshal(b, &r.Body)
	}
	return r
}

func createFunction(t testing.TB, url string, in api.CreateFunctionInput) {
	t.Helper()
	b, _ := json.Marshal(in)
	resp, err := http.Post(url+"/2015-03-31/functions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("create %s: %d %s", in.FunctionName, resp.StatusCode, body)
	}
}

func put(t testing.TB, url, path string, v any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPut, url+path, bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func synthetic(name string, dur, cold string) api.CreateFunctionInput {
	return api.CreateFunctionInput{FunctionName: name, Runtime: "synthetic", MemorySize: 512, Timeout: 30, Coldstart: &api.SyntheticConfig{Duration: dur, ColdStart: cold}}
}

func TestColdThenWarm(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3})
	createFunction(t, c.GatewayURL(0), synthetic("hello", "5ms", "30ms"))
	first := invoke(t, c.GatewayURL(0), "hello", `{"x":1}`)
	if first.Status != 200 || !first.Cold {
		t.Fatalf("first invoke: status %d cold %v body %s", first.Status, first.Cold, first.Payload)
	}
	if string(first.Payload) != `{"x":1}` {
		t.Fatalf("synthetic handler should echo its event, got %s", first.Payload)
	}
	// The second gateway reuses the same warm sandbox: routing is cluster-wide.
	second := invoke(t, c.GatewayURL(1), "hello", `{}`)
	if second.Status != 200 || second.Cold || second.Sandbox != first.Sandbox {
		t.Fatalf("second invoke: status %d cold %v sandbox %q want warm on %q", second.Status, second.Cold, second.Sandbox, first.Sandbox)
	}
	missing := invoke(t, c.GatewayURL(0), "nope", `{}`)
	if missing.Status != 404 || missing.ErrorType != "ResourceNotFoundException" {
		t.Fatalf("missing function: %d %s", missing.Status, missing.ErrorType)
	}
}

func del(t testing.TB, url, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, url+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRecreatedFunctionNeverRunsInOldSandboxes: delete a function and
// create another under the same name; the old incarnation's warm sandboxes
// must not serve it (they are dropped), and the new one runs cold, then
// warm, with its own configuration.
func TestRecreatedFunctionNeverRunsInOldSandboxes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 2})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("again", "1ms", "5ms"))
	old := invoke(t, url, "again", `{}`)
	if old.Status != 200 {
		t.Fatalf("first incarnation: %d", old.Status)
	}
	if code := del(t, url, "/2015-03-31/functions/again"); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	in := synthetic("again", "1ms", "5ms")
	in.MemorySize = 1024
	createFunction(t, url, in)
	for i, gw := range []string{c.GatewayURL(1), url, c.GatewayURL(1)} {
		r := invoke(t, gw, "again", `{}`)
		if r.Status != 200 || r.Sandbox == old.Sandbox {
			t.Fatalf("call %d of the new incarnation: %d on sandbox %s (old %s)", i, r.Status, r.Sandbox, old.Sandbox)
		}
		if i == 0 && !r.Cold {
			t.Fatal("the new incarnation's first call was warm")
		}
		if i > 0 && r.Cold {
			t.Fatalf("call %d of the new incarnation cold-started: its sandboxes are dropped after each call", i)
		}
	}
}

// TestStatusShowsReplicasAgree: the status page asks every placement node
// for its own view; after writes they report the same digest at the same
// applied index.
func TestStatusShowsReplicasAgree(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("f", "1ms", "1ms"))
	if r := invoke(t, url, "f", `{}`); r.Status != 200 {
		t.Fatalf("invoke: %d", r.Status)
	}
	var st api.Status
	err := c.WaitFor(func() bool {
		resp, err := http.Get(url + api.PathStatus)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = api.Status{}
		if json.NewDecoder(resp.Body).Decode(&st) != nil || len(st.Replicas) != 3 {
			return false
		}
		for _, r := range st.Replicas {
			if r.Error != "" || r.Digest == "" || r.Digest != st.Replicas[0].Digest || r.Applied != st.Replicas[0].Applied || r.ClusterID == "" {
				return false
			}
		}
		return true
	}, 5*time.Second)
	if err != nil {
		t.Fatalf("replicas do not agree in the status: %+v", st.Replicas)
	}
}
