package testcluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/logstream"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// buildHandler builds testdata/sdkfn tagged with tag, zipped.
func buildHandler(t *testing.T, tag string) []byte {
	return testcluster.BuildGoHandler(t, "./testdata/sdkfn", tag)
}

func sdkClient(url, key, secret string) *lambda.Client {
	return testcluster.SDKClient(url, key, secret)
}

type answer struct {
	Tag           string `json:"tag"`
	Version       string `json:"version"`
	RequestID     string `json:"request_id"`
	InitType      string `json:"init_type"`
	ClientContext string `json:"client_context"`
}

func decodeAnswer(t *testing.T, b []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}

// TestOfficialSDK is the walkthrough a user does with the unmodified
// aws-sdk-go-v2 Lambda client, signed with the development key: deploy an
// aws-lambda-go handler, invoke it every way, publish two versions, route
// an alias 80/20, reserve and provision concurrency, and get each typed
// error.
func TestOfficialSDK(t *testing.T) {
	v1zip, v2zip := buildHandler(t, "v1"), buildHandler(t, "v2") // before the cluster: a compile takes both cores
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2})
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")

	created, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("arn:aws:iam::000000000000:role/x"),
		Handler: aws.String("bootstrap"), Code: &types.FunctionCode{ZipFile: v1zip}, MemorySize: aws.Int32(128), Timeout: aws.Int32(2),
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	if aws.ToString(created.CodeSha256) == "" || created.CodeSize != int64(len(v1zip)) {
		t.Fatalf("CreateFunction answer: sha %q size %d", aws.ToString(created.CodeSha256), created.CodeSize)
	}
	cc := base64.StdEncoding.EncodeToString([]byte(`{"custom":{"k":"ctx-value"}}`))
	out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`), ClientContext: aws.String(cc)})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	a := decodeAnswer(t, out.Payload)
	if out.StatusCode != 200 || a.Tag != "v1" || a.Version != "$LATEST" || a.ClientContext != "ctx-value" || aws.ToString(out.ExecutedVersion) != "$LATEST" || out.FunctionError != nil {
		t.Fatalf("Invoke: %d %s executed %q error %v", out.StatusCode, out.Payload, aws.ToString(out.ExecutedVersion), out.FunctionError)
	}
	if dry, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), InvocationType: types.InvocationTypeDryRun}); err != nil || dry.StatusCode != 204 {
		t.Fatalf("DryRun: %+v %v", dry, err)
	}
	tail, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("Invoke Tail: %v", err)
	}
	logs, _ := base64.StdEncoding.DecodeString(aws.ToString(tail.LogResult))
	if !strings.Contains(string(logs), "START RequestId:") || !strings.Contains(string(logs), "REPORT RequestId:") || !strings.Contains(string(logs), "handled ") {
		t.Fatalf("LogResult lacks START/REPORT or the handler's line:\n%s", logs)
	}
	fe, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"fail":"boom"}`)})
	if err != nil || aws.ToString(fe.FunctionError) != "Unhandled" || !strings.Contains(string(fe.Payload), `"errorType":"errorString"`) || !strings.Contains(string(fe.Payload), "boom") {
		t.Fatalf("function error: %+v %s %v", fe, fe.Payload, err)
	}
	to, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{"sleep_ms":5000}`)})
	if err != nil || aws.ToString(to.FunctionError) != "Unhandled" || !strings.Contains(string(to.Payload), "Sandbox.Timedout") || !strings.Contains(string(to.Payload), "Task timed out after 2.00 seconds") {
		t.Fatalf("timeout: %+v %s %v", to, to.Payload, err)
	}
	if after, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: []byte(`{}`)}); err != nil || after.FunctionError != nil || decodeAnswer(t, after.Payload).Tag != "v1" {
		t.Fatalf("invoke after the timeout: %+v %v", after, err)
	}

	// Two versions and an alias routing 20% to the second.
	p1, err := cl.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")})
	if err != nil || aws.ToString(p1.Version) != "1" {
		t.Fatalf("PublishVersion 1: %+v %v", p1, err)
	}
	if again, err := cl.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")}); err != nil || aws.ToString(again.Version) != "1" {
		t.Fatalf("publishing unchanged code: %+v %v", again, err)
	}
	if _, err := cl.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("hello"), ZipFile: v2zip}); err != nil {
		t.Fatalf("UpdateFunctionCode: %v", err)
	}
	p2, err := cl.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("hello")})
	if err != nil || aws.ToString(p2.Version) != "2" {
		t.Fatalf("PublishVersion 2: %+v %v", p2, err)
	}
	if _, err := cl.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("hello"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.2}}}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	const n = 200
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				o, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Qualifier: aws.String("live"), Payload: []byte(`{}`)})
				if err != nil {
					errs <- err
					return
				}
				var a answer
				json.Unmarshal(o.Payload, &a)
				ran := aws.ToString(o.ExecutedVersion)
				if want := map[string]string{"1": "v1", "2": "v2"}[ran]; a.Tag != want || a.Version != ran {
					errs <- errors.New("executed version " + ran + " ran code " + a.Tag + " as version " + a.Version)
					return
				}
				mu.Lock()
				counts[ran]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("alias invoke: %v", err)
	}
	// Binomial(200, 0.2): mean 40, sd 5.7; 4 sd either side.
	if counts["2"] < 17 || counts["2"] > 63 || counts["1"]+counts["2"] != n {
		t.Fatalf("alias split %v, want about 160/40", counts)
	}

	// Reserved and provisioned concurrency.
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(10)}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	pc, err := cl.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("hello"), Qualifier: aws.String("2"), ProvisionedConcurrentExecutions: aws.Int32(2)})
	if err != nil || pc.Status == types.ProvisionedConcurrencyStatusEnumFailed {
		t.Fatalf("PutProvisionedConcurrencyConfig: %+v %v", pc, err)
	}
	var last *lambda.GetProvisionedConcurrencyConfigOutput
	if err := c.WaitFor(func() bool {
		g, err := cl.GetProvisionedConcurrencyConfig(ctx, &lambda.GetProvisionedConcurrencyConfigInput{FunctionName: aws.String("hello"), Qualifier: aws.String("2")})
		last = g
		return err == nil && g.Status == types.ProvisionedConcurrencyStatusEnumReady && aws.ToInt32(g.AllocatedProvisionedConcurrentExecutions) == 2
	}, 60*time.Second); err != nil {
		if last != nil {
			t.Fatalf("provisioned concurrency never READY: %s, allocated %d of %d: %s", last.Status, aws.ToInt32(last.AllocatedProvisionedConcurrentExecutions), aws.ToInt32(last.RequestedProvisionedConcurrentExecutions), aws.ToString(last.StatusReason))
		}
		t.Fatal("provisioned concurrency never READY")
	}
	warm, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Qualifier: aws.String("2"), Payload: []byte(`{}`)})
	if err != nil || warm.FunctionError != nil {
		t.Fatalf("invoke of the provisioned version: %v", err)
	}
	if a := decodeAnswer(t, warm.Payload); a.InitType != "provisioned-concurrency" || a.Tag != "v2" {
		t.Fatalf("provisioned invoke ran in %+v", a)
	}
	if _, err := cl.PutProvisionedConcurrencyConfig(ctx, &lambda.PutProvisionedConcurrencyConfigInput{FunctionName: aws.String("hello"), Qualifier: aws.String("$LATEST"), ProvisionedConcurrentExecutions: aws.Int32(1)}); !isCode(err, "InvalidParameterValueException") {
		t.Fatalf("provisioned $LATEST: %v", err)
	}

	// Typed errors.
	_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("missing")})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("missing function: want ResourceNotFoundException, got %T %v", err, err)
	}
	_, err = cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("hello"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: v1zip}})
	var rc *types.ResourceConflictException
	if !errors.As(err, &rc) {
		t.Fatalf("create twice: want ResourceConflictException, got %T %v", err, err)
	}
	_, err = cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(950)})
	var ip *types.InvalidParameterValueException
	if !errors.As(err, &ip) {
		t.Fatalf("reserving past the floor: want InvalidParameterValueException, got %T %v", err, err)
	}
	_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello"), Payload: bytes.Repeat([]byte("x"), 7<<20)})
	var tl *types.RequestTooLargeException
	if !errors.As(err, &tl) {
		t.Fatalf("7 MB payload: want RequestTooLargeException, got %T %v", err, err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(0)}); err == nil {
		t.Fatal("reserved 0 below the provisioned 2 was accepted")
	}
	if _, err := cl.DeleteProvisionedConcurrencyConfig(ctx, &lambda.DeleteProvisionedConcurrencyConfigInput{FunctionName: aws.String("hello"), Qualifier: aws.String("2")}); err != nil {
		t.Fatalf("DeleteProvisionedConcurrencyConfig: %v", err)
	}
	if _, err := cl.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("hello"), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
		t.Fatalf("reserved 0: %v", err)
	}
	_, err = cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("hello")})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Fatalf("throttle: want TooManyRequestsException with the reserved Reason, got %T %v", err, err)
	}
	vs, err := cl.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("hello")})
	if err != nil || len(vs.Versions) != 3 {
		t.Fatalf("ListVersionsByFunction: %+v %v", vs, err)
	}
	if _, err := cl.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// TestTenantsAndSignatures: a second account sees nothing of the first
// (not found, exactly like a function that does not exist, ARNs naming the
// first account included), and bad signatures, skewed clocks and unknown
// keys get 403 with Lambda's error types.
func TestTenantsAndSignatures(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	ctx := context.Background()
	url := c.GatewayURL(0)
	a := sdkClient(url, "test", "test")
	if _, err := a.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("mine"), Runtime: "synthetic", Role: aws.String("r"), Code: &types.FunctionCode{}}); err != nil {
		t.Fatalf("CreateFunction: %v", err)
	}
	resp, err := http.Post(url+api.PathAccounts, "application/json", strings.NewReader(`{"Account":"111111111111"}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create account: %v %v", resp, err)
	}
	var info api.AccountInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if len(info.Keys) != 1 || info.Keys[0].SecretAccessKey == "" {
		t.Fatalf("account answer %+v", info)
	}
	b := sdkClient(url, info.Keys[0].AccessKeyID, info.Keys[0].SecretAccessKey)
	if err := c.WaitFor(func() bool { _, err := b.ListFunctions(ctx, &lambda.ListFunctionsInput{}); return err == nil }, 10*time.Second); err != nil {
		t.Fatal("the new key never verified")
	}
	for name, call := range map[string]func() error{
		"GetFunction": func() error {
			_, err := b.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("mine")})
			return err
		},
		"Invoke": func() error {
			_, err := b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("mine")})
			return err
		},
		"Invoke by A's ARN": func() error {
			_, err := b.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:mine")})
			return err
		},
		"DeleteFunction": func() error {
			_, err := b.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("mine")})
			return err
		},
		"PublishVersion": func() error {
			_, err := b.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("mine")})
			return err
		},
		"GetFunctionConfig": func() error {
			_, err := b.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("mine")})
			return err
		},
		"PutFunctionConcurrency": func() error {
			_, err := b.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("mine"), ReservedConcurrentExecutions: aws.Int32(1)})
			return err
		},
	} {
		var nf *types.ResourceNotFoundException
		if err := call(); !errors.As(err, &nf) {
			t.Errorf("%s as another account: want ResourceNotFoundException, got %v", name, err)
		}
	}
	if l, err := b.ListFunctions(ctx, &lambda.ListFunctionsInput{}); err != nil || len(l.Functions) != 0 {
		t.Fatalf("another account lists %+v %v", l, err)
	}
	// Bad secret, unknown key.
	if _, err := sdkClient(url, "test", "wrong").ListFunctions(ctx, &lambda.ListFunctionsInput{}); !isCode(err, "InvalidSignatureException") {
		t.Fatalf("bad signature: %v", err)
	}
	if _, err := sdkClient(url, "AKIDUNKNOWN", "x").ListFunctions(ctx, &lambda.ListFunctionsInput{}); !isCode(err, "UnrecognizedClientException") {
		t.Fatalf("unknown key: %v", err)
	}
	// A clock 10 minutes behind.
	req, _ := http.NewRequest("GET", url+"/2015-03-31/functions/", nil)
	const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, req, emptySHA, "lambda", "us-east-1", time.Now().Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 403 || r.Header.Get("X-Amzn-ErrorType") != "InvalidSignatureException" {
		t.Fatalf("skewed clock: %d %s", r.StatusCode, r.Header.Get("X-Amzn-ErrorType"))
	}
}

// TestControlPlaneEdges: a stale RevisionId is refused with Lambda's
// PreconditionFailedException, an operation the gateway does not
// implement is named in its error, and an environment value (a secret)
// appears in no record and no platform log line.
func TestControlPlaneEdges(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	rec := c.Records()
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")
	const secret = "s3cr3t-value-4711"
	f, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("edge"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"),
		Code: &types.FunctionCode{ZipFile: buildHandler(t, "v1")}, Environment: &types.Environment{Variables: map[string]string{"API_TOKEN": secret}}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := cl.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("edge"), MemorySize: aws.Int32(256), RevisionId: f.RevisionId})
	if err != nil || u.MemorySize == nil || *u.MemorySize != 256 || aws.ToString(u.RevisionId) == aws.ToString(f.RevisionId) {
		t.Fatalf("UpdateFunctionConfiguration with the current RevisionId: %+v %v", u, err)
	}
	_, err = cl.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("edge"), MemorySize: aws.Int32(512), RevisionId: f.RevisionId})
	var pf *types.PreconditionFailedException
	if !errors.As(err, &pf) {
		t.Fatalf("stale RevisionId: want PreconditionFailedException, got %T %v", err, err)
	}
	_, err = cl.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String("edge")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "UnsupportedOperationException" || !strings.Contains(ae.ErrorMessage(), "GetPolicy") {
		t.Fatalf("GetPolicy: want an error naming it, got %v", err)
	}
	_, err = cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("java"), Runtime: types.RuntimeJava21, Role: aws.String("r"), Handler: aws.String("x"), Code: &types.FunctionCode{ZipFile: buildHandler(t, "v1")}})
	var ip *types.InvalidParameterValueException
	if !errors.As(err, &ip) {
		t.Fatalf("a zip for a runtime that cannot run it: want InvalidParameterValueException, got %v", err)
	}
	out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("edge"), LogType: types.LogTypeTail})
	if err != nil || out.FunctionError != nil {
		t.Fatalf("invoke: %v", err)
	}
	if err := c.WaitFor(func() bool { return rec.Len() > 0 }, 5*time.Second); err != nil {
		t.Fatal("no record")
	}
	for _, r := range rec.All() {
		if b, _ := json.Marshal(r); strings.Contains(string(b), secret) {
			t.Fatalf("a record carries the secret: %s", b)
		}
	}
	if logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult)); strings.Contains(string(logs), secret) {
		t.Fatalf("the log tail carries the secret: %s", logs)
	}
	nc := c.Client(natsutil.RoleTool, "logs")
	var lines []logstream.Entry
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = logstream.Read(lctx, nc, gateway.DefaultAccount, "edge", time.Time{}, true, func(e logstream.Entry) error {
		lines = append(lines, e)
		if strings.HasPrefix(e.Line, "REPORT") {
			cancel()
		}
		return nil
	})
	var report bool
	for _, e := range lines {
		if strings.Contains(e.Line, secret) {
			t.Fatalf("log line carries the secret: %+v", e)
		}
		report = report || strings.HasPrefix(e.Line, "REPORT")
	}
	if !report {
		t.Fatalf("the function's log stream has no REPORT line (%d lines, %v)", len(lines), err)
	}
}
