package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/wire"
)

func setIdempotency(t *testing.T, url, fn, key string) {
	t.Helper()
	b, _ := json.Marshal(api.IdempotencyInput{Key: key, TTLSeconds: 3600})
	req, _ := http.NewRequest("PUT", url+api.PathFunctionOptions+fn+"/idempotency", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("set idempotency: %v %v", resp, err)
	}
	resp.Body.Close()
}

// runs counts the records of fn whose handler really ran (not replayed,
// not rejected, not throttled), by idempotency-relevant payload marker.
func runs(rec *testcluster.Recorder, fn string) (ran, replayed, rejected int) {
	for _, r := range rec.Everything() {
		if r.Function != fn {
			continue
		}
		switch {
		case r.Replayed:
			replayed++
		case r.Outcome == api.OutcomeRejected:
			rejected++
		case r.Outcome == api.OutcomeThrottled || r.Outcome == api.OutcomeInjected:
		default:
			ran++
		}
	}
	return
}

// TestPlatformIdempotency: with a function's idempotency on (a real
// redis-server), a duplicate gets the stored response without running, a
// changed payload under the key a typed error, a duplicate while the
// first runs a typed retryable error, a function error frees the key, and
// without Redis nothing runs (fail closed) until it is back.
func TestPlatformIdempotency(t *testing.T) {
	rd := testcluster.StartRedis(t)
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1, RedisURL: rd.URL()})
	rec := c.Records()
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl := lambda.New(sdkClient(url, "test", "test").Options(), func(o *lambda.Options) { o.RetryMaxAttempts = 1 })
	createSynthetic(t, cl, "pay")
	setIdempotency(t, url, "pay", "json:order_id")
	invoke := func(payload string) (*lambda.InvokeOutput, error) {
		return cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("pay"), Payload: []byte(payload)})
	}
	first, err := invoke(`{"order_id":"A","amount":1}`)
	if err != nil || first.FunctionError != nil {
		t.Fatalf("first: %v", err)
	}
	second, err := invoke(`{"order_id":"A","amount":1}`)
	if err != nil || !bytes.Equal(second.Payload, first.Payload) {
		t.Fatalf("duplicate: %v %s", err, second.Payload)
	}
	if _, err := invoke(`{"order_id":"A","amount":2}`); !isCode(err, "IdempotencyValidationException") {
		t.Fatalf("another payload under the key: %v", err)
	}
	// A duplicate while the first still runs.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		invoke(`{"order_id":"S","duration_ms":800}`)
	}()
	if err := c.WaitFor(func() bool { return inFlight(t, url, "pay") == 1 }, 5*time.Second); err != nil {
		t.Fatal("the slow first attempt never ran")
	}
	if _, err := invoke(`{"order_id":"S","duration_ms":800}`); !isCode(err, "IdempotencyAlreadyInProgressException") {
		t.Fatalf("duplicate in progress: %v", err)
	}
	wg.Wait()
	// A function error frees the key.
	if o, err := invoke(`{"order_id":"B","fail":"card declined"}`); err != nil || o.FunctionError == nil {
		t.Fatalf("failing attempt: %v", err)
	}
	if o, err := invoke(`{"order_id":"B","fail":"card declined"}`); err != nil || o.FunctionError == nil {
		t.Fatalf("the retry after a function error must run again: %v", err)
	}
	// Redis down: fail closed.
	rd.Stop()
	if _, err := invoke(`{"order_id":"C"}`); !isCode(err, "IdempotencyStoreUnavailableException") {
		t.Fatalf("without Redis: %v", err)
	}
	rd.Start()
	if o, err := invoke(`{"order_id":"C"}`); err != nil || o.FunctionError != nil {
		t.Fatalf("after Redis returned: %v", err)
	}
	// Ran: A, S, B twice, C = 5; replayed: A once; rejected: A (other
	// payload), S (in progress), C (no Redis).
	var ran, replayed, rejected int
	c.WaitFor(func() bool { ran, replayed, rejected = runs(rec, "pay"); return ran+replayed+rejected >= 9 }, 5*time.Second)
	if ran != 5 || replayed != 1 || rejected != 3 {
		t.Fatalf("ran %d, replayed %d, rejected %d; want 5, 1, 3", ran, replayed, rejected)
	}
}

// TestIdempotencyUnderPlatformFaults: asynchronous events whose handler's
// effect happens but whose result is lost (crash-after-handler) are
// retried by the platform; with idempotency on (key request-id) every
// retry gets the stored response, so each event's handler ran once.
func TestIdempotencyUnderPlatformFaults(t *testing.T) {
	rd := testcluster.StartRedis(t)
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1, RedisURL: rd.URL(), TimeScale: asyncScale})
	rec := c.Records()
	url := c.GatewayURL(0)
	cl := sdkClient(url, "test", "test")
	createSynthetic(t, cl, "charge")
	setIdempotency(t, url, "charge", "request-id")
	injectFault(t, url, "charge", api.FaultInput{Kind: wire.FaultCrashAfterHandler, Rate: 0.5, Seed: 3})
	const n = 20
	for i := 0; i < n; i++ {
		invokeEvent(t, cl, "charge", `{"order":`+strings.Repeat("1", i+1)+`}`)
	}
	// Every event ends with a successful answer (a run or a replay) and
	// none ran twice.
	done := func() (map[string]int, int) {
		ranBy := map[string]int{}
		answered := map[string]bool{}
		for _, r := range rec.Everything() {
			if r.Function != "charge" || r.Outcome != api.OutcomeOK {
				continue
			}
			if !r.Replayed {
				ranBy[r.RequestID]++
			}
			if r.Replayed || r.Fault == "" {
				answered[r.RequestID] = true
			}
		}
		return ranBy, len(answered)
	}
	if err := c.WaitFor(func() bool { _, a := done(); return a == n }, 30*time.Second); err != nil {
		_, a := done()
		t.Fatalf("%d of %d events answered", a, n)
	}
	ranBy, _ := done()
	crashed := 0
	for _, r := range rec.Everything() {
		if r.Function == "charge" && r.Fault == wire.FaultCrashAfterHandler {
			crashed++
		}
	}
	for id, k := range ranBy {
		if k != 1 {
			t.Errorf("event %s ran its handler %d times", id, k)
		}
	}
	if crashed == 0 {
		t.Fatal("no invocation was hit by the fault: nothing was tested")
	}
	t.Logf("%d events, %d results lost to crash-after-handler, every handler ran once", n, crashed)
}

// TestIdempotencyWorkerCrashInProgress: a worker dies while a handler
// holds its idempotency key INPROGRESS. Retries are refused as in progress
// until the key expires with the invocation's deadline; then exactly one
// attempt runs and completes.
func TestIdempotencyWorkerCrashInProgress(t *testing.T) {
	rd := testcluster.StartRedis(t)
	// Built before the cluster starts: a compile takes both cores, and a
	// starved cluster loses leases and leaders for reasons of its own.
	code := buildHandler(t, "v1")
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2, RedisURL: rd.URL(), TimeScale: 30})
	rec := c.Records()
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl := sdkClient(url, "test", "test")
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: "provided.al2023", Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: code}, Timeout: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	setIdempotency(t, url, "slow", "request-id")
	invokeEvent(t, cl, "slow", `{"sleep_ms":2000}`)
	var victim string
	if err := c.WaitFor(func() bool {
		for _, id := range c.IDs("worker") {
			if n := c.Node(id); n != nil && n.Worker != nil && n.Worker.Stats().Busy == 1 {
				victim = id
				return true
			}
		}
		return false
	}, 10*time.Second); err != nil {
		t.Fatal("the event never ran")
	}
	killed := time.Now()
	c.Kill(victim)
	// The retry runs once the key expired (the 3 s deadline), on the
	// other worker, and completes.
	var ok []api.Record
	if err := c.WaitFor(func() bool {
		ok = ok[:0]
		for _, r := range rec.Everything() {
			if r.Function == "slow" && r.Outcome == api.OutcomeOK && !r.Replayed {
				ok = append(ok, r)
			}
		}
		return len(ok) >= 1
	}, 30*time.Second); err != nil {
		t.Fatal("no attempt completed after the crash")
	}
	if len(ok) != 1 || ok[0].Worker == victim {
		t.Fatalf("completed attempts %+v (victim %s)", ok, victim)
	}
	if started := time.Unix(0, ok[0].StartNs); started.Before(killed.Add(500 * time.Millisecond)) {
		t.Fatalf("the retry ran at %v, before the in-progress key could expire", started.Sub(killed))
	}
	rejected := 0
	for _, r := range rec.Everything() {
		if r.Function == "slow" && r.Outcome == api.OutcomeRejected && r.Reason == "IdempotencyAlreadyInProgressException" {
			rejected++
		}
	}
	t.Logf("retried after the crash: %d refused while the key was in progress, then one completed on %s", rejected, ok[0].Worker)
}
