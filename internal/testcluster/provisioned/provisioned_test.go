// Package provisioned_test runs the provisioned-concurrency drill in a
// test process of its own.
package provisioned_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

func buildHandler(t *testing.T, tag string) []byte {
	return testcluster.BuildGoHandler(t, "../testdata/sdkfn", tag)
}

func sdkClient(url, key, secret string) *lambda.Client {
	return testcluster.SDKClient(url, key, secret)
}

func metricsOf(t *testing.T, url string) string { return testcluster.Metrics(t, url) }

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestProvisionedSpillover: with 3 provisioned, the first 3 concurrent
// invocations run warm in provisioned sandboxes (init 0), the rest spill
// over to on-demand sandboxes and are counted; coldstart check passes with
// the provisioned sandboxes in the accounting.
func TestProvisionedSpillover(t *testing.T) {
	// Node logs go to stderr, which go test shows only when this package
	// fails: the provisioner says there why a pre-warm was given back.
	// The handler is built before the cluster starts: a compile takes both
	// cores, and a starved cluster changes leaders for reasons of its own
	// (placement's TestProvisionerAsksAgainAfterLeaderChange covers a
	// leader change in the middle of a pre-warm).
	zip := buildHandler(t, "v1")
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2, Verbose: true})
	rec := c.Records()
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("pc"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}, Timeout: aws.Int32(5)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("pc")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("pc"), ReservedConcurrentExecutions: aws.Int32(8)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("1"), ProvisionedConcurrentExecutions: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	var last *lambda.GetProvisionedConcurrencyConfigOutput
	if err := c.WaitFor(func() bool {
		g, err := cl.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("pc"), Qualifier: aws.String("1")})
		last = g
		return err == nil && g.Status == types.ProvisionedConcurrencyStatusEnumReady
	}, 60*time.Second); err != nil {
		if last != nil {
			t.Fatalf("provisioned concurrency never READY: %s, allocated %d of %d: %s", last.Status, aws.ToInt32(last.AllocatedProvisionedConcurrentExecutions), aws.ToInt32(last.RequestedProvisionedConcurrentExecutions), aws.ToString(last.StatusReason))
		}
		t.Fatal("provisioned concurrency never READY")
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("pc"), Qualifier: aws.String("1"), Payload: []byte(`{"sleep_ms":800}`)}); err != nil || o.FunctionError != nil {
				t.Errorf("invoke: %v", err)
			}
		}()
	}
	wg.Wait()
	var recs []api.Record
	if err := c.WaitFor(func() bool {
		recs = recs[:0]
		for _, r := range rec.All() {
			if r.Function == "pc" && r.StartNs >= start.UnixNano() {
				recs = append(recs, r)
			}
		}
		return len(recs) >= 5
	}, 5*time.Second); err != nil {
		t.Fatalf("records: %d of 5", len(recs))
	}
	var prov, spill int
	for _, r := range recs {
		switch {
		case r.Provisioned && !r.Cold && r.InitMs == 0:
			prov++
		case !r.Provisioned && r.Cold:
			spill++
		default:
			t.Errorf("record neither provisioned-warm nor on-demand cold: %+v", r)
		}
	}
	if prov != 3 || spill != 2 {
		t.Fatalf("%d provisioned, %d spilled over; want 3 and 2", prov, spill)
	}
	body := metricsOf(t, c.GatewayURL(0))
	if l := grepLines(body, "coldstart_gateway_provisioned_concurrency_spillover_invocations_total{"); !strings.HasSuffix(l, "} 2") {
		t.Fatalf("spillover not counted:\n%s", grepLines(body, "provisioned"))
	}
	rep := check.Run(rec.Everything(), check.Options{DefaultLimit: 1000, Limits: []check.LimitChange{{AtNs: 0, Account: gateway.DefaultAccount, Limit: 1000}}})
	if !rep.OK() {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Fatalf("coldstart check failed:\n%s", b.String())
	}
}
