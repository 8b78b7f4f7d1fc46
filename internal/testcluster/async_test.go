package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// asyncScale compresses Lambda's asynchronous delays: the function-error
// waits of 1 and 2 minutes become 100 and 200 ms, a 60 s maximum age 100 ms.
const asyncScale = 600

func createSynthetic(t *testing.T, cl *lambda.Client, name string) {
	t.Helper()
	if _, err := cl.CreateFunction(context.Background(), &lambda.CreateFunctionInput{FunctionName: aws.String(name), Runtime: "synthetic", Role: aws.String("r"), Code: &types.FunctionCode{},
		Environment: &types.Environment{Variables: map[string]string{"COLDSTART_DURATION": "1ms", "COLDSTART_COLD_START": "1ms"}}}); err != nil {
		t.Fatal(err)
	}
}

func invokeEvent(t *testing.T, cl *lambda.Client, name string, payload string) {
	t.Helper()
	out, err := cl.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
	if err != nil || out.StatusCode != 202 {
		t.Fatalf("Event invoke of %s: %+v %v", name, out, err)
	}
}

// inFlight is how many invocations of fn the cluster's status shows running.
func inFlight(t *testing.T, url, fn string) int {
	t.Helper()
	resp, err := http.Get(url + api.PathStatus)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st api.Status
	json.NewDecoder(resp.Body).Decode(&st)
	for _, f := range st.Functions {
		if f.Name == fn {
			return f.InFlight
		}
	}
	return 0
}

// recordsOf are the records of one function, by request id, in time order.
func recordsOf(rec *testcluster.Recorder, fn string) map[string][]api.Record {
	out := map[string][]api.Record{}
	for _, r := range rec.Everything() {
		if r.Function == fn {
			out[r.RequestID] = append(out[r.RequestID], r)
		}
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].ReceivedNs < rs[j].ReceivedNs })
	}
	return out
}

func deadLetters(t *testing.T, url, fn string) []api.DeadLetter {
	t.Helper()
	resp, err := http.Get(url + api.PathDLQ + "?function=" + fn)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ DeadLetters []api.DeadLetter }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.DeadLetters
}

// sumSeries adds the values of family name's series whose labels contain
// label, in a /metrics text.
func sumSeries(body, name, label string) float64 {
	sum := 0.0
	for _, l := range strings.Split(body, "\n") {
		if !strings.HasPrefix(l, name+"{") || !strings.Contains(l, label) {
			continue
		}
		if i := strings.LastIndexByte(l, ' '); i > 0 {
			if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// TestAsyncPoisonEvent: an event whose handler always fails gets exactly 1
// + MaximumRetryAttempts attempts, the waits between them Lambda's (1 and 2
// minutes, scaled), then one dead-letter record with its attempt count and
// last error, and its OnFailure destination receives Lambda's record; a
// good event reaches OnSuccess. Redrive puts the poison event back.
func TestAsyncPoisonEvent(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1, TimeScale: asyncScale})
	rec := c.Records()
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl := sdkClient(url, "test", "test")
	createSynthetic(t, cl, "poison")
	if _, err := cl.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("poison"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("nats:test.ok")}, OnFailure: &types.OnFailure{Destination: aws.String("nats:test.failed")}}}); err != nil {
		t.Fatalf("PutFunctionEventInvokeConfig: %v", err)
	}
	got, err := cl.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("poison")})
	if err != nil || aws.ToInt32(got.MaximumRetryAttempts) != 2 || aws.ToInt32(got.MaximumEventAgeInSeconds) != 21600 || aws.ToString(got.DestinationConfig.OnFailure.Destination) != "nats:test.failed" {
		t.Fatalf("GetFunctionEventInvokeConfig: %+v %v", got, err)
	}
	if _, err := cl.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("poison"), MaximumRetryAttempts: aws.Int32(3)}); !isCode(err, "InvalidParameterValueException") {
		t.Fatalf("MaximumRetryAttempts 3: %v", err)
	}
	nc := c.Client(natsutil.RoleTool, "dest")
	dests := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("cs.dest.>", dests); err != nil {
		t.Fatal(err)
	}
	nc.Flush()

	invokeEvent(t, cl, "poison", `{"fail":"boom"}`)
	invokeEvent(t, cl, "poison", `{"ok":1}`)
	var dls []api.DeadLetter
	if err := c.WaitFor(func() bool { dls = deadLetters(t, url, "poison"); return len(dls) == 1 }, 20*time.Second); err != nil {
		t.Fatalf("dead letters: %+v", dls)
	}
	d := dls[0]
	if d.ApproximateInvokeCount != 3 || d.Condition != "RetriesExhausted" || !strings.Contains(d.ErrorMessage, "boom") {
		t.Fatalf("dead letter %+v", d)
	}
	var attempts []api.Record
	c.WaitFor(func() bool { attempts = recordsOf(rec, "poison")[d.RequestID]; return len(attempts) >= 3 }, 5*time.Second)
	if len(attempts) != 3 {
		t.Fatalf("poison attempts: %d records %+v", len(attempts), attempts)
	}
	for i, r := range attempts {
		wantTrigger := api.TriggerRetry
		if i == 0 {
			wantTrigger = api.TriggerEvent
		}
		if r.Attempt != i+1 || r.Trigger != wantTrigger || r.Outcome != api.OutcomeError {
			t.Fatalf("attempt %d record %+v", i+1, r)
		}
	}
	// Lambda waits 1 minute before the 2nd attempt and 2 before the 3rd.
	w1 := time.Duration(attempts[1].ReceivedNs - attempts[0].ReceivedNs)
	w2 := time.Duration(attempts[2].ReceivedNs - attempts[1].ReceivedNs)
	if w1 < 90*time.Millisecond || w2 < 180*time.Millisecond || w2 < w1 {
		t.Fatalf("waits between attempts %v and %v; want >= 100 ms and >= 200 ms (1 and 2 minutes scaled)", w1, w2)
	}
	// Destinations: one Success, one RetriesExhausted, Lambda's record.
	seen := map[string]map[string]any{}
	timeout := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case m := <-dests:
			var rec map[string]any
			if err := json.Unmarshal(m.Data, &rec); err != nil {
				t.Fatalf("destination record %s: %v", m.Data, err)
			}
			rc := rec["requestContext"].(map[string]any)
			seen[m.Subject+" "+rc["condition"].(string)] = rec
		case <-timeout:
			t.Fatalf("destination records: %v", seen)
		}
	}
	fail := seen["cs.dest.test.failed RetriesExhausted"]
	if fail == nil || seen["cs.dest.test.ok Success"] == nil {
		t.Fatalf("destination records: %v", seen)
	}
	rc := fail["requestContext"].(map[string]any)
	if rc["approximateInvokeCount"].(float64) != 3 || rc["requestId"] != d.RequestID || fail["version"] != "1.0" || fail["requestPayload"].(map[string]any)["fail"] != "boom" {
		t.Fatalf("failure record %v", fail)
	}
	if resp := fail["responseContext"].(map[string]any); resp["functionError"] != "Unhandled" {
		t.Fatalf("failure record's responseContext %v", resp)
	}

	// Redrive: the event runs 3 more times and is dead-lettered again.
	resp, err := http.Post(url+api.PathDLQ+"/redrive", "application/json", strings.NewReader(`{"Function":"poison"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("redrive: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := c.WaitFor(func() bool {
		return len(recordsOf(rec, "poison")[d.RequestID]) == 6 && len(deadLetters(t, url, "poison")) == 1
	}, 20*time.Second); err != nil {
		t.Fatalf("after redrive: %d attempts, %d dead letters", len(recordsOf(rec, "poison")[d.RequestID]), len(deadLetters(t, url, "poison")))
	}
	if r := recordsOf(rec, "poison")[d.RequestID][3]; r.Trigger != api.TriggerRedrive {
		t.Fatalf("redriven attempt %+v", r)
	}
	// Lambda's async metrics, on /metrics and in status.
	body := metricsOf(t, url)
	for _, m := range []string{"async_events_received_total", "async_events_dropped_total", "dead_letter_errors_total", "destination_delivery_failures_total", "async_event_age_seconds_count"} {
		if !strings.Contains(body, "coldstart_gateway_"+m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// Per function, as Lambda's metrics of the function: both events'
	// runs (6 of poison's, 1 good), 6 function errors, 2 drops (before and
	// after the redrive), and an age for each dispatch.
	for _, m := range []struct {
		name string
		want float64
	}{{"function_invocations_total", 7}, {"function_errors_total", 6}, {"function_async_events_received_total", 2}, {"function_async_events_dropped_total", 2}, {"function_async_event_age_seconds_count", 7}} {
		if got := sumSeries(body, "coldstart_gateway_"+m.name, `function="poison"`); got != m.want {
			t.Errorf("%s of poison: %v, want %v", m.name, got, m.want)
		}
	}
	resp, err = http.Get(url + api.PathStatus)
	if err != nil {
		t.Fatal(err)
	}
	var st api.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Async == nil || st.Async.Received != 2 || st.Async.Dropped != 2 || st.Async.DeadLetters != 1 || st.Async.Queued != 0 {
		t.Fatalf("status async %+v", st.Async)
	}
}

// TestAsyncEdges: 404 at once for a missing function or alias, 413 past 1
// MB, reserved concurrency 0 straight to the failure path, an event older
// than its maximum age to the failure path with EventAgeExceeded, and a
// function destination invoked with the record.
func TestAsyncEdges(t *testing.T) {
	// Built before the cluster starts: a compile takes both cores, and a
	// starved cluster loses leases and leaders for reasons of its own.
	code := buildHandler(t, "v1")
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1, TimeScale: asyncScale})
	rec := c.Records()
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl := sdkClient(url, "test", "test")
	// A real process, so that a held invocation holds in real time.
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("edge"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: code}, Timeout: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	createSynthetic(t, cl, "sink")
	for name, in := range map[string]*lambda.InvokeInput{
		"missing function": {FunctionName: aws.String("nope"), InvocationType: types.InvocationTypeEvent},
		"missing alias":    {FunctionName: aws.String("edge"), Qualifier: aws.String("live"), InvocationType: types.InvocationTypeEvent},
	} {
		var nf *types.ResourceNotFoundException
		if _, err := cl.Invoke(ctx, in); !errors.As(err, &nf) {
			t.Errorf("%s: want ResourceNotFoundException, got %v", name, err)
		}
	}
	var tl *types.RequestTooLargeException
	if _, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("edge"), InvocationType: types.InvocationTypeEvent, Payload: bytes.Repeat([]byte("x"), 1<<20+1)}); !errors.As(err, &tl) {
		t.Fatalf("1 MB + 1: want RequestTooLargeException, got %v", err)
	}
	// Reserved concurrency 0: no attempt, the failure path at once, and
	// the failure record goes to another function.
	if _, err := cl.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("edge"),
		DestinationConfig: &types.DestinationConfig{OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:sink")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("edge"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatal(err)
	}
	invokeEvent(t, cl, "edge", `{"n":1}`)
	if err := c.WaitFor(func() bool { return len(deadLetters(t, url, "edge")) == 1 && len(recordsOf(rec, "sink")) == 1 }, 15*time.Second); err != nil {
		t.Fatalf("reserved 0: %d dead letters, sink ran %d times", len(deadLetters(t, url, "edge")), len(recordsOf(rec, "sink")))
	}
	if n := len(recordsOf(rec, "edge")); n != 0 {
		t.Fatalf("edge ran %d times with reserved concurrency 0", n)
	}
	// Maximum age: with reserved concurrency 0 lifted but a limit of 1 held
	// by a long invocation, queued events are throttled until they age out.
	if _, err := cl.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("edge")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("edge"), MaximumEventAgeInSeconds: aws.Int32(60)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("edge"), ReservedConcurrentExecutions: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	hold := make(chan error, 1)
	go func() {
		_, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("edge"), Payload: []byte(`{"sleep_ms":3000}`)})
		hold <- err
	}()
	if err := c.WaitFor(func() bool { return inFlight(t, url, "edge") == 1 }, 10*time.Second); err != nil {
		t.Fatal("the holding invocation never ran")
	}
	invokeEvent(t, cl, "edge", `{"n":2}`)
	if err := c.WaitFor(func() bool {
		for _, d := range deadLetters(t, url, "edge") {
			if d.Condition == "EventAgeExceeded" {
				return true
			}
		}
		return false
	}, 15*time.Second); err != nil {
		t.Fatalf("no EventAgeExceeded dead letter: %+v", deadLetters(t, url, "edge"))
	}
	<-hold
}

// ranOK counts the request ids of fn with a successful run.
func ranOK(rec *testcluster.Recorder, fn string) int {
	n := 0
	for _, rs := range recordsOf(rec, fn) {
		for _, r := range rs {
			if r.Outcome == api.OutcomeOK {
				n++
				break
			}
		}
	}
	return n
}

// TestAsyncSurvivesKills: no accepted event is lost when a gateway (a
// dispatcher) or a worker is killed while events run: every request id
// ends executed or dead-lettered.
func TestAsyncSurvivesKills(t *testing.T) {
	// Built before the cluster starts: a compile takes both cores, and a
	// starved cluster loses leases and leaders for reasons of its own.
	code := buildHandler(t, "v1")
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 2, TimeScale: 30})
	rec := c.Records()
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(1), "test", "test")
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("slow"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: code}, Timeout: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	// Reserved concurrency 8: the burst waits in the queue, so the kills
	// below hit events both running and queued.
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("slow"), ReservedConcurrentExecutions: aws.Int32(8)}); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), InvocationType: types.InvocationTypeEvent, Payload: []byte(fmt.Sprintf(`{"sleep_ms":600,"n":%d}`, i))})
			if err != nil || out.StatusCode != 202 {
				t.Errorf("event %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	// Kill gateway 0 (its dispatchers hold events in flight) and a worker.
	if err := c.WaitFor(func() bool { return ranOK(rec, "slow") >= 5 }, 20*time.Second); err != nil {
		t.Fatal("no event ran")
	}
	doneAtKill := ranOK(rec, "slow")
	c.Kill(c.IDs("gateway")[0])
	c.Kill(c.IDs("worker")[0])
	if doneAtKill >= n {
		t.Fatalf("every event had finished before the kills (%d): nothing was tested", doneAtKill)
	}
	if err := c.WaitFor(func() bool {
		return ranOK(rec, "slow")+len(deadLetters(t, c.GatewayURL(1), "slow")) >= n
	}, 60*time.Second); err != nil {
		t.Fatalf("events lost: %d request ids ran ok, %d dead letters, of %d accepted", len(recordsOf(rec, "slow")), len(deadLetters(t, c.GatewayURL(1), "slow")), n)
	}
	again := 0
	for _, rs := range recordsOf(rec, "slow") {
		ran := 0
		for _, r := range rs {
			if r.Outcome != api.OutcomeThrottled {
				ran++
			}
		}
		if ran > 1 {
			again++
		}
	}
	t.Logf("%d of %d done at the kills; %d request ids ran more than once (at least once: the killed worker's)", doneAtKill, n, again)
}
