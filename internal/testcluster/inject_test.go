package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/wire"
)

func injectFault(t *testing.T, url, fn string, in api.FaultInput) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest("PUT", url+api.PathFunctionOptions+fn+"/fault", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("inject %+v: %v %v", in, resp, err)
	}
	resp.Body.Close()
}

// TestFaultInjection: each fault kind, applied from the next invocation,
// does to the caller what it names, and its records are marked.
func TestFaultInjection(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	rec := c.Records()
	ctx := context.Background()
	url := c.GatewayURL(0)
	cl := lambda.New(sdkClient(url, "test", "test").Options(), func(o *lambda.Options) { o.RetryMaxAttempts = 1 })
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("f"), Runtime: "synthetic", Role: aws.String("r"), Code: &types.FunctionCode{}, Timeout: aws.Int32(1),
		Environment: &types.Environment{Variables: map[string]string{"COLDSTART_COLD_START": "1ms"}}}); err != nil {
		t.Fatal(err)
	}
	call := func() (*lambda.InvokeOutput, error) {
		return cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"duration_ms":300}`)})
	}
	faultRecords := func(kind string) []api.Record {
		var out []api.Record
		for _, r := range rec.Everything() {
			if r.Function == "f" && r.Fault == kind {
				out = append(out, r)
			}
		}
		return out
	}

	// error-before on the 2nd invocation only: a platform error, no run.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultErrorBefore, Nth: []int{2}})
	if _, err := call(); err != nil {
		t.Fatalf("1st: %v", err)
	}
	if _, err := call(); !isCode(err, "ServiceException") || !strings.Contains(err.Error(), "error-before") {
		t.Fatalf("2nd, error-before: %v", err)
	}
	if _, err := call(); err != nil {
		t.Fatalf("3rd: %v", err)
	}
	if err := c.WaitFor(func() bool { return len(faultRecords(wire.FaultErrorBefore)) == 1 }, 5*time.Second); err != nil {
		t.Fatalf("error-before records: %+v", faultRecords(wire.FaultErrorBefore))
	}
	if r := faultRecords(wire.FaultErrorBefore)[0]; r.Outcome != api.OutcomeInjected || r.Sandbox != "" {
		t.Fatalf("error-before record %+v", r)
	}

	// crash-after-handler: the handler ran (its record says ok), the caller
	// gets a platform error.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultCrashAfterHandler, Rate: 1})
	if _, err := call(); !isCode(err, "ServiceException") || !strings.Contains(err.Error(), "crash-after-handler") {
		t.Fatalf("crash-after-handler: %v", err)
	}
	// timeout-after-effect: the effect happened, the caller sees a timeout.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultTimeoutAfterEffect, Rate: 1})
	if o, err := call(); err != nil || aws.ToString(o.FunctionError) != "Unhandled" || !strings.Contains(string(o.Payload), "Sandbox.Timedout") {
		t.Fatalf("timeout-after-effect: %+v %v", o, err)
	}
	// add-delay: 800 ms late, a 300 ms handler and a 1 s timeout: a real
	// timeout.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultAddDelay, Rate: 1, DelayMs: 800})
	if o, err := call(); err != nil || !strings.Contains(string(o.Payload), "Task timed out after 1.00 seconds") {
		t.Fatalf("add-delay: %+v %v", o, err)
	}
	// duplicate-delivery: two runs of one request.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultDuplicateDelivery, Rate: 1})
	if _, err := call(); err != nil {
		t.Fatalf("duplicate-delivery: %v", err)
	}
	// drop-response: the handler ran, the caller waits out its deadline.
	injectFault(t, url, "f", api.FaultInput{Kind: wire.FaultDropResponse, Rate: 1})
	t0 := time.Now()
	if _, err := call(); err == nil || time.Since(t0) < time.Second {
		t.Fatalf("drop-response: %v after %v", err, time.Since(t0))
	}
	for _, kind := range []string{wire.FaultCrashAfterHandler, wire.FaultTimeoutAfterEffect, wire.FaultAddDelay, wire.FaultDropResponse} {
		if err := c.WaitFor(func() bool { return len(faultRecords(kind)) == 1 }, 5*time.Second); err != nil {
			t.Fatalf("%s: records %+v", kind, faultRecords(kind))
		}
	}
	if r := faultRecords(wire.FaultCrashAfterHandler)[0]; r.Outcome != api.OutcomeOK {
		t.Fatalf("crash-after-handler: the handler's run should be recorded ok, got %+v", r)
	}
	if r := faultRecords(wire.FaultTimeoutAfterEffect)[0]; r.Outcome != api.OutcomeTimeout {
		t.Fatalf("timeout-after-effect record %+v", r)
	}
	if err := c.WaitFor(func() bool { return len(faultRecords(wire.FaultDuplicateDelivery)) == 2 }, 5*time.Second); err != nil {
		t.Fatalf("duplicate-delivery: records %+v", faultRecords(wire.FaultDuplicateDelivery))
	}
	dups := faultRecords(wire.FaultDuplicateDelivery)
	if dups[0].RequestID != dups[1].RequestID || (dups[0].Trigger != api.TriggerDuplicate) == (dups[1].Trigger != api.TriggerDuplicate) {
		t.Fatalf("duplicate-delivery records %+v", dups)
	}
	// Cleared: back to normal.
	req, _ := http.NewRequest("DELETE", url+api.PathFunctionOptions+"f/fault", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("clear: %v %v", resp, err)
	}
	if o, err := call(); err != nil || o.FunctionError != nil {
		t.Fatalf("after clearing: %+v %v", o, err)
	}
}
