package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
)

// upRate is `coldstart up`'s default --scale-rate (1000/10s).
var upRate = quota.Rate{Burst: 1000, Window: 10 * time.Second}

// upCluster starts an in-process cluster shaped like `coldstart up`:
// 3 placement nodes (boltdb, Tuned), 2 gateways, 3 workers, reconcile
// every 2 s and a 5 s grant grace (the worker and placement defaults).
// o.Rate is passed as is: the zero Rate is an unlimited scaling rate, upRate
// is `coldstart up`'s default.
func upCluster(b *testing.B, o testcluster.Options) *testcluster.Cluster {
	b.Helper()
	// The timings `coldstart up` uses, not testcluster's tightened ones.
	o.Raft, o.Member = placement.Tuned, membership.Fast
	if o.Gateways == 0 {
		o.Gateways = 2
	}
	if o.Workers == 0 {
		o.Workers = 3
	}
	if o.WorkerCapacity == 0 {
		o.WorkerCapacity = 5000
	}
	if o.ReconcileEvery == 0 {
		o.ReconcileEvery = 2 * time.Second
	}
	if o.Grace == 0 {
		o.Grace = 5 * time.Second
	}
	return testcluster.New(b, o)
}

// newTransport is the one client transport every figure and its baseline
// use: keep-alive, enough idle connections for every client goroutine.
func newTransport(clients int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        clients + 16,
		MaxIdleConnsPerHost: clients + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// payload100 is a 100-byte JSON event without synthetic control fields, so
// the synthetic handler echoes it without decoding.
var payload100 = func() []byte {
	p := `{"pad":"` + strings.Repeat("x", 100-len(`{"pad":""}`)) + `"}`
	if len(p) != 100 {
		panic(len(p))
	}
	return []byte(p)
}()

// echoServer is the HTTP baseline: a plain net/http server on loopback
// that echoes the request body.
func echoServer(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// post sends one keep-alive POST and drains the answer.
func post(hc *http.Client, url string, body []byte) (*http.Response, error) {
	resp, _, err := postBody(hc, url, body, false)
	return resp, err
}

// postBody is post that also returns the answer's body when keep is set.
func postBody(hc *http.Client, url string, body []byte, keep bool) (*http.Response, []byte, error) {
	resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if keep {
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp, nil, err
}

type result struct {
	status int
	msg    string // body of an error answer
	cold   bool
	worker string
	errTyp string
	lat    time.Duration
	// initMs and durMs are the worker's own figures for the invocation
	// (its sandbox's cold start and the handler's run), as the gateway
	// passes them on.
	initMs, durMs float64
}

func invoke(hc *http.Client, gw, fn string, body []byte) (result, error) {
	start := time.Now()
	resp, msg, err := postBody(hc, invokeURL(gw, fn), body, true)
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode == http.StatusOK {
		msg = nil
	}
	lat := time.Since(start)
	initMs, _ := strconv.ParseFloat(resp.Header.Get(api.HeaderInitMs), 64)
	durMs, _ := strconv.ParseFloat(resp.Header.Get(api.HeaderDurationMs), 64)
	return result{status: resp.StatusCode, msg: string(msg), cold: resp.Header.Get(api.HeaderCold) == "true", worker: resp.Header.Get(api.HeaderWorker), errTyp: resp.Header.Get(api.HeaderErrorType), lat: lat, initMs: initMs, durMs: durMs}, nil
}

func invokeURL(gw, fn string) string { return gw + "/2015-03-31/functions/" + fn + "/invocations" }

// synthetic is a function whose modelled delays are all zero.
func synthetic(name string) api.CreateFunctionInput {
	return api.CreateFunctionInput{FunctionName: name, Runtime: "synthetic", MemorySize: 128, Timeout: 30, Coldstart: &api.SyntheticConfig{Duration: "0ms", ColdStart: "0ms"}}
}

func createFunction(b *testing.B, hc *http.Client, gw string, in api.CreateFunctionInput) {
	b.Helper()
	body, _ := json.Marshal(in)
	resp, err := hc.Post(gw+api.PathFunctions, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("create %s: %d %s", in.FunctionName, resp.StatusCode, msg)
	}
}

func setAccountLimit(b *testing.B, hc *http.Client, gw string, limit int) {
	b.Helper()
	body, _ := json.Marshal(api.SetLimitInput{ConcurrentExecutions: limit})
	req, _ := http.NewRequest(http.MethodPut, gw+api.PathAccountLimit, bytes.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("set account limit %d: %d %s", limit, resp.StatusCode, msg)
	}
}

// dryRun makes sure gw knows fn (a DryRun answers 204 after the lookup
// and creates no sandbox), so a timed invoke never pays a cache miss. A
// gateway may answer 404 for a moment for a function just created through
// another gateway (its cache refresh can read a follower that has not
// applied the create yet), so it retries for up to 3 s.
func dryRun(b *testing.B, hc *http.Client, gw, fn string) {
	b.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPost, invokeURL(gw, fn), nil)
		req.Header.Set(api.HeaderInvocationType, "DryRun")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("dry run %s on %s: %d", fn, gw, resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// prewarm runs n concurrent invocations that each hold a sandbox for hold,
// so that about n warm sandboxes of fn exist afterwards.
func prewarm(b *testing.B, hc *http.Client, gws []string, fn string, n int, hold time.Duration) {
	b.Helper()
	body := []byte(fmt.Sprintf(`{"duration_ms":%d}`, hold.Milliseconds()))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := invoke(hc, gws[i%len(gws)], fn, body)
			if err == nil && r.status != http.StatusOK {
				err = fmt.Errorf("prewarm %s: status %d %s %s", fn, r.status, r.errTyp, r.msg)
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// gatewayURLs lists every gateway's base URL.
func gatewayURLs(c *testcluster.Cluster) []string {
	var out []string
	for i := range c.IDs(membership.RoleGateway) {
		out = append(out, c.GatewayURL(i))
	}
	return out
}

// reportLatency reports p50/p99 of xs in ms under a name prefix.
func reportLatency(b *testing.B, prefix string, xs []time.Duration) (p50, p99 time.Duration) {
	p50, p99 = Percentile(xs, 0.50), Percentile(xs, 0.99)
	b.ReportMetric(Ms(p50), prefix+"p50-ms")
	b.ReportMetric(Ms(p99), prefix+"p99-ms")
	return p50, p99
}
