package testcluster_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/codestore"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// TestDeployAtPeak updates a function's code under load. From the
// records (each carries the code digest it ran): no sandbox ever runs two
// digests, nothing runs the old code once the update is answered and its
// deploy notice had time to arrive, and the new code's cold starts show.
func TestDeployAtPeak(t *testing.T) {
	// Built before the cluster starts: a compile takes both cores, and a
	// starved cluster loses leases and leaders for reasons of its own.
	v1, v2 := buildHandler(t, "v1"), buildHandler(t, "v2")
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 2})
	rec := c.Records()
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")
	f, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("dep"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: v1}, Timeout: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	for i := 0; i < 6; i++ {
		g := sdkClient(c.GatewayURL(i%2), "test", "test")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				o, err := g.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("dep"), Payload: []byte(`{"sleep_ms":20}`)})
				calls.Add(1)
				if err != nil || o.FunctionError != nil {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond) // load before the deploy, not a synchronisation
	up, err := cl.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("dep"), ZipFile: v2})
	if err != nil {
		t.Fatal(err)
	}
	deployed := time.Now()
	time.Sleep(2 * time.Second) // load after the deploy
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d invocations failed across the deploy", failed.Load(), calls.Load())
	}
	oldSHA, newSHA := aws.ToString(f.CodeSha256), aws.ToString(up.CodeSha256)
	if err := c.WaitFor(func() bool { return rec.Len() >= int(calls.Load()) }, 5*time.Second); err != nil {
		t.Fatalf("records: %d of %d", rec.Len(), calls.Load())
	}
	bySandbox := map[string]string{}
	var oldAfter, newCold, newRuns int
	// The deploy notice reaches gateways and workers within moments; a
	// request already routed with the old revision may still finish on
	// old code just after.
	const propagation = 500 * time.Millisecond
	for _, r := range rec.All() {
		if r.Function != "dep" {
			continue
		}
		if d, ok := bySandbox[r.Sandbox]; ok && d != r.CodeSha256 {
			t.Fatalf("sandbox %s ran %s and %s", r.Sandbox, d, r.CodeSha256)
		}
		bySandbox[r.Sandbox] = r.CodeSha256
		switch {
		case r.CodeSha256 == oldSHA && r.StartNs > deployed.Add(propagation).UnixNano():
			oldAfter++
		case r.CodeSha256 == newSHA:
			newRuns++
			if r.Cold {
				newCold++
			}
		}
	}
	if oldAfter > 0 || newRuns == 0 || newCold == 0 {
		t.Fatalf("old code after the deploy: %d; new code runs %d, cold %d", oldAfter, newRuns, newCold)
	}
	t.Logf("%d invocations, %d sandboxes, new code %d runs (%d cold)", calls.Load(), len(bySandbox), newRuns, newCold)
}

func metricsOf(t *testing.T, url string) string { return testcluster.Metrics(t, url) }

// TestCorruptCodeBundle: a bundle that no longer matches its digest is
// refused with a typed, retryable error naming the problem; the worker
// keeps serving other functions.
func TestCorruptCodeBundle(t *testing.T) {
	zip := buildHandler(t, "v1")
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")
	f, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("bad"), Runtime: types.RuntimeProvidedal2023, Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: zip}})
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the object under the digest's name, as damage on disk or
	// a forged upload would.
	nc := c.Client(natsutil.RoleGateway, "gateway-9")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, codestore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	name, err := codestore.ObjectName(aws.ToString(f.CodeSha256))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, name, append([]byte("not the zip"), zip[:100]...)); err != nil {
		t.Fatal(err)
	}
	noRetry := lambda.New(cl.Options(), func(o *lambda.Options) { o.RetryMaxAttempts = 1 })
	_, err = noRetry.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("bad")})
	var se *types.ServiceException
	if !errors.As(err, &se) || !strings.Contains(se.ErrorMessage(), "corrupt") {
		t.Fatalf("invoke of a corrupt bundle: want ServiceException naming the corruption, got %v", err)
	}
	if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("good"), Runtime: "synthetic", Role: aws.String("r"), Code: &types.FunctionCode{}}); err != nil {
		t.Fatal(err)
	}
	if o, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("good"), Payload: []byte(`{}`)}); err != nil || o.FunctionError != nil {
		t.Fatalf("the worker stopped serving after a corrupt bundle: %v", err)
	}
}

// zipFiles zips name -> content (mode 0644).
func zipFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	zw.Close()
	return buf.Bytes()
}

// processesIn lists the processes whose working directory is under dir
// (a sandbox's processes run in its code directory).
func processesIn(dirPart string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && strings.Contains(cwd, dirPart) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestSandboxAbuseThroughTheCluster: a memory hog, a busy loop and a child
// that ignores SIGTERM, deployed as ordinary python3.12 functions, are each
// ended at their limit with every process they started; the worker keeps
// serving.
func TestSandboxAbuseThroughTheCluster(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")
	cases := []struct {
		name, code, want string
		timeout          int32
	}{
		{"memhog", "def handler(e, c):\n    x = bytearray(512 * 1024 * 1024)\n    for i in range(0, len(x), 4096):\n        x[i] = 1\n    return len(x)\n", "out of memory", 10},
		{"busyloop", "def handler(e, c):\n    while True:\n        pass\n", "Task timed out after 1.00 seconds", 1},
		{"stubborn", "import subprocess, sys, time\ndef handler(e, c):\n    subprocess.Popen([sys.executable, '-c', 'import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(600)'])\n    time.sleep(30)\n", "Task timed out after 1.00 seconds", 1},
	}
	for _, tc := range cases {
		f, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(tc.name), Runtime: types.RuntimePython312, Role: aws.String("r"), Handler: aws.String("app.handler"),
			Code: &types.FunctionCode{ZipFile: zipFiles(t, map[string]string{"app.py": tc.code})}, MemorySize: aws.Int32(128), Timeout: aws.Int32(tc.timeout)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.name), Payload: []byte(`{}`)})
		if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), tc.want) {
			t.Fatalf("%s: want a function error with %q, got %v %s", tc.name, tc.want, err, out.Payload)
		}
		sum, _ := base64.StdEncoding.DecodeString(aws.ToString(f.CodeSha256))
		hexDir := hex.EncodeToString(sum)
		if err := c.WaitFor(func() bool { return len(processesIn(hexDir)) == 0 }, 5*time.Second); err != nil {
			t.Fatalf("%s: processes left in its sandbox: %v", tc.name, processesIn(hexDir))
		}
	}
	fine, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String("fine"), Runtime: types.RuntimePython312, Role: aws.String("r"), Handler: aws.String("app.handler"),
		Code: &types.FunctionCode{ZipFile: zipFiles(t, map[string]string{"app.py": "def handler(e, c):\n    return {'ok': c.aws_request_id}\n"})}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fine"), Payload: []byte(`{}`)}); err != nil || out.FunctionError != nil || !strings.Contains(string(out.Payload), `"ok"`) {
		t.Fatalf("the worker after the abuse: %v %s", err, out.Payload)
	}
	// The process check sees a live sandbox (so its silence above means
	// the abusers' processes are gone).
	sum, _ := base64.StdEncoding.DecodeString(aws.ToString(fine.CodeSha256))
	if len(processesIn(hex.EncodeToString(sum))) == 0 {
		t.Fatal("no process found in the warm sandbox's code directory: the check above is blind")
	}
}
