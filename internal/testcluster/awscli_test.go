package testcluster_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

const examplesDir = "../../examples"

// zipTree zips every file under dir with its permission bits, as `zip -r`
// does: the execute bit is what lets Lambda run ./bootstrap.
func zipTree(t *testing.T, dir string) []byte {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".md") {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, p := range names {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		h := &zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate}
		h.SetMode(fi.Mode().Perm())
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildHelloGo builds examples/hello-go as the README says (a static linux
// binary named bootstrap) with main.build set to build, and zips it.
func buildHelloGo(t *testing.T, build string) []byte {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-ldflags", "-X main.build="+build, "-o", filepath.Join(dir, "bootstrap"), "./"+filepath.ToSlash(filepath.Join(examplesDir, "hello-go")))
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/hello-go: %v\n%s", err, out)
	}
	return zipTree(t, dir)
}

type exampleAnswer struct {
	Message     string `json:"message"`
	Build       string `json:"build"`
	Version     string `json:"function_version"`
	RequestID   string `json:"request_id"`
	Runtime     string `json:"runtime"`
	RemainingMs int    `json:"remaining_ms"`
	MemoryMB    int    `json:"memory_limit_in_mb"`
	Function    string `json:"function_name"`
}

// TestExamples deploys each directory of examples/ with the official SDK,
// as its README does, and checks what it answers.
func TestExamples(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	ctx := context.Background()
	cl := sdkClient(c.GatewayURL(0), "test", "test")

	cases := []struct {
		name, runtime, handler string
		zip                    func() []byte
		check                  func(t *testing.T, a exampleAnswer)
	}{
		{"hello-go", "provided.al2023", "bootstrap", func() []byte { return buildHelloGo(t, "v1") }, func(t *testing.T, a exampleAnswer) {
			if a.Build != "v1" || a.Version != "$LATEST" {
				t.Errorf("build %q version %q, want v1 $LATEST", a.Build, a.Version)
			}
		}},
		{"script-runtime", "provided.al2023", "bootstrap", func() []byte { return zipTree(t, filepath.Join(examplesDir, "script-runtime")) }, func(t *testing.T, a exampleAnswer) {
			if a.Runtime != "script" || a.RemainingMs <= 0 || a.RemainingMs > 3000 {
				t.Errorf("runtime %q remaining %d ms, want script and (0, 3000]", a.Runtime, a.RemainingMs)
			}
		}},
		{"python", "python3.12", "app.handler", func() []byte { return zipTree(t, filepath.Join(examplesDir, "python")) }, func(t *testing.T, a exampleAnswer) {
			if a.Function != "python" || a.MemoryMB != 128 || a.Version != "$LATEST" || a.RemainingMs <= 0 || a.RemainingMs > 3000 {
				t.Errorf("function %q memory %d version %q remaining %d ms", a.Function, a.MemoryMB, a.Version, a.RemainingMs)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code := tc.zip()
			if _, err := cl.CreateFunction(ctx, &lambda.CreateFunctionInput{
				FunctionName: aws.String(tc.name), Runtime: types.Runtime(tc.runtime), Handler: aws.String(tc.handler),
				Role: aws.String("arn:aws:iam::000000000000:role/x"), Code: &types.FunctionCode{ZipFile: code},
				MemorySize: aws.Int32(128), Timeout: aws.Int32(3),
			}); err != nil {
				t.Fatalf("CreateFunction: %v", err)
			}
			for i := 0; i < 2; i++ { // cold, then warm in the same process
				out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.name), Payload: []byte(`{"name":"ada"}`), LogType: types.LogTypeTail})
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if out.StatusCode != 200 || out.FunctionError != nil {
					t.Fatalf("Invoke: %d error %q %s", out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
				}
				var a exampleAnswer
				if err := json.Unmarshal(out.Payload, &a); err != nil {
					t.Fatalf("answer %s: %v", out.Payload, err)
				}
				if a.Message != "Hello, ada!" || a.RequestID == "" {
					t.Fatalf("answer %s", out.Payload)
				}
				tc.check(t, a)
				logs, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult))
				if !strings.Contains(string(logs), "START RequestId: "+a.RequestID) || !strings.Contains(string(logs), "REPORT RequestId: "+a.RequestID) {
					t.Fatalf("LogResult lacks START/REPORT for %s:\n%s", a.RequestID, logs)
				}
			}
		})
	}

	// The script runtime reports a raised exception through /error and
	// keeps serving.
	out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("script-runtime"), Payload: []byte(`{"fail":"boom"}`)})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), `"errorType": "ValueError"`) && !strings.Contains(string(out.Payload), `"errorType":"ValueError"`) {
		t.Fatalf("script-runtime error: %v %+v %s", err, out, out.Payload)
	}
	if out, err := cl.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("script-runtime"), Payload: []byte(`{}`)}); err != nil || out.FunctionError != nil {
		t.Fatalf("script-runtime after an error: %v %+v", err, out)
	}
}

// awsCLI runs the aws command as a user on a machine with no AWS
// configuration would: credentials and region from the environment only.
type awsCLI struct {
	t        *testing.T
	bin, dir string
	env      []string
	endpoint string
	v2       bool
}

func newAWSCLI(t *testing.T, endpoint string) *awsCLI {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not on PATH")
	}
	home := t.TempDir()
	a := &awsCLI{t: t, bin: bin, dir: t.TempDir(), endpoint: endpoint, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_DEFAULT_REGION=us-east-1",
	}}
	out, _, err := a.run("--version")
	if err != nil {
		t.Fatalf("aws --version: %v", err)
	}
	// v1 prints its version on stderr in old releases, stdout in new ones.
	a.v2 = strings.HasPrefix(strings.TrimSpace(out), "aws-cli/2")
	t.Logf("%s (v2: %v)", strings.TrimSpace(out), a.v2)
	return a
}

// run executes aws with args in the scratch directory, bounded so that a
// hung CLI fails the test instead of stalling it.
func (a *awsCLI) run(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Dir, cmd.Env = a.dir, a.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	out := o.String()
	if strings.HasPrefix(strings.Join(args, " "), "--version") && out == "" {
		out = e.String()
	}
	return out, e.String(), err
}

// lambda runs `aws --endpoint-url E lambda args...`, fails the test on a
// non-zero exit, and decodes the JSON it prints into v (when not nil).
func (a *awsCLI) lambda(v any, args ...string) string {
	a.t.Helper()
	full := append([]string{"--endpoint-url", a.endpoint, "lambda"}, args...)
	out, errOut, err := a.run(full...)
	if err != nil {
		a.t.Fatalf("aws lambda %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			a.t.Fatalf("aws lambda %s printed %q: %v", args[0], out, err)
		}
	}
	return out
}

// payload is the invoke flag set that sends a raw JSON payload: v1 sends
// --payload as is, v2 expects base64 unless told otherwise.
func (a *awsCLI) payload(p string) []string {
	if a.v2 {
		return []string{"--cli-binary-format", "raw-in-base64-out", "--payload", p}
	}
	return []string{"--payload", p}
}

func (a *awsCLI) writeFile(name string, b []byte) string {
	a.t.Helper()
	if err := os.WriteFile(filepath.Join(a.dir, name), b, 0o644); err != nil {
		a.t.Fatal(err)
	}
	return name
}

func (a *awsCLI) readAnswer(name string) exampleAnswer {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, name))
	if err != nil {
		a.t.Fatal(err)
	}
	var ans exampleAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		a.t.Fatalf("%s: %q: %v", name, b, err)
	}
	return ans
}

type cliInvoke struct {
	StatusCode      int
	ExecutedVersion string
	FunctionError   string
	LogResult       string
}

// TestAWSCLIWalkthrough is examples/hello-go/README.md run with the real
// AWS CLI: deploy, invoke (with logs), update, publish, route an alias,
// reserve and provision concurrency, read the account, get an error, delete.
func TestAWSCLIWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("aws CLI not on PATH")
	}
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	cli := newAWSCLI(t, c.GatewayURL(0))
	cli.writeFile("hello.zip", buildHelloGo(t, "v1"))
	cli.writeFile("hello-v2.zip", buildHelloGo(t, "v2"))

	var fn struct {
		FunctionName, Runtime, Handler, CodeSha256, FunctionArn string
		CodeSize                                                int64
	}
	cli.lambda(&fn, "create-function", "--function-name", "hello", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", "arn:aws:iam::000000000000:role/x", "--zip-file", "fileb://hello.zip")
	if fn.FunctionName != "hello" || fn.Runtime != "provided.al2023" || fn.CodeSha256 == "" || !strings.HasPrefix(fn.FunctionArn, "arn:aws:lambda:us-east-1:000000000000:function:hello") {
		t.Fatalf("create-function printed %+v", fn)
	}

	var inv cliInvoke
	cli.lambda(&inv, append(append([]string{"invoke", "--function-name", "hello"}, cli.payload(`{"name":"x"}`)...), "out.json")...)
	if ans := cli.readAnswer("out.json"); inv.StatusCode != 200 || inv.ExecutedVersion != "$LATEST" || inv.FunctionError != "" || ans.Message != "Hello, x!" || ans.Build != "v1" {
		t.Fatalf("invoke: %+v, out.json %+v", inv, ans)
	}
	inv = cliInvoke{}
	cli.lambda(&inv, "invoke", "--function-name", "hello", "--log-type", "Tail", "tail.json")
	logs, err := base64.StdEncoding.DecodeString(inv.LogResult)
	if err != nil || !strings.Contains(string(logs), "START RequestId:") || !strings.Contains(string(logs), "REPORT RequestId:") || !strings.Contains(string(logs), "greeting world") {
		t.Fatalf("invoke --log-type Tail: LogResult %q (%v):\n%s", inv.LogResult, err, logs)
	}

	var got struct {
		Configuration struct{ FunctionName, CodeSha256 string }
		Code          struct{ RepositoryType, Location string }
	}
	cli.lambda(&got, "get-function", "--function-name", "hello")
	if got.Configuration.FunctionName != "hello" || got.Configuration.CodeSha256 != fn.CodeSha256 {
		t.Fatalf("get-function: %+v", got)
	}
	var list struct {
		Functions []struct{ FunctionName string }
	}
	cli.lambda(&list, "list-functions")
	if len(list.Functions) != 1 || list.Functions[0].FunctionName != "hello" {
		t.Fatalf("list-functions: %+v", list)
	}

	// Version 1 is the v1 build; new code, then version 2.
	var pub struct{ Version, CodeSha256 string }
	cli.lambda(&pub, "publish-version", "--function-name", "hello")
	if pub.Version != "1" {
		t.Fatalf("publish-version: %+v, want 1", pub)
	}
	var upd struct{ CodeSha256 string }
	cli.lambda(&upd, "update-function-code", "--function-name", "hello", "--zip-file", "fileb://hello-v2.zip")
	if upd.CodeSha256 == "" || upd.CodeSha256 == fn.CodeSha256 {
		t.Fatalf("update-function-code: sha %q, was %q", upd.CodeSha256, fn.CodeSha256)
	}
	cli.lambda(&pub, "publish-version", "--function-name", "hello")
	if pub.Version != "2" || pub.CodeSha256 != upd.CodeSha256 {
		t.Fatalf("second publish-version: %+v, want 2 with sha %s", pub, upd.CodeSha256)
	}

	var alias struct {
		Name, FunctionVersion string
		RoutingConfig         struct{ AdditionalVersionWeights map[string]float64 }
	}
	cli.lambda(&alias, "create-alias", "--function-name", "hello", "--name", "live", "--function-version", "1",
		"--routing-config", `{"AdditionalVersionWeights":{"2":0.2}}`)
	if alias.Name != "live" || alias.FunctionVersion != "1" || alias.RoutingConfig.AdditionalVersionWeights["2"] != 0.2 {
		t.Fatalf("create-alias: %+v", alias)
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		inv = cliInvoke{}
		cli.lambda(&inv, append(append([]string{"invoke", "--function-name", "hello", "--qualifier", "live"}, cli.payload(`{"name":"live"}`)...), "live.json")...)
		ans := cli.readAnswer("live.json")
		want := map[string]string{"1": "v1", "2": "v2"}[inv.ExecutedVersion]
		if inv.StatusCode != 200 || want == "" || ans.Build != want || ans.Version != inv.ExecutedVersion {
			t.Fatalf("invoke --qualifier live: %+v ran %+v", inv, ans)
		}
		seen[inv.ExecutedVersion]++
	}
	t.Logf("alias live (1, 20%% to 2) over 4 invokes: %v", seen)

	var versions struct{ Versions []struct{ Version string } }
	cli.lambda(&versions, "list-versions-by-function", "--function-name", "hello")
	var vs []string
	for _, v := range versions.Versions {
		vs = append(vs, v.Version)
	}
	if strings.Join(vs, ",") != "$LATEST,1,2" {
		t.Fatalf("list-versions-by-function: %v, want $LATEST,1,2", vs)
	}

	var conc struct{ ReservedConcurrentExecutions int }
	cli.lambda(&conc, "put-function-concurrency", "--function-name", "hello", "--reserved-concurrent-executions", "10")
	if conc.ReservedConcurrentExecutions != 10 {
		t.Fatalf("put-function-concurrency: %+v", conc)
	}
	var pc struct {
		Status                                                                             string
		RequestedProvisionedConcurrentExecutions, AllocatedProvisionedConcurrentExecutions int
	}
	cli.lambda(&pc, "put-provisioned-concurrency-config", "--function-name", "hello", "--qualifier", "2", "--provisioned-concurrent-executions", "1")
	if pc.RequestedProvisionedConcurrentExecutions != 1 || pc.Status == "FAILED" {
		t.Fatalf("put-provisioned-concurrency-config: %+v", pc)
	}
	// Each CLI run takes most of a second, which paces the polling.
	deadline := time.Now().Add(30 * time.Second)
	for pc.Status != "READY" {
		if time.Now().After(deadline) {
			t.Fatalf("provisioned concurrency not READY after 30 s: %+v", pc)
		}
		cli.lambda(&pc, "get-provisioned-concurrency-config", "--function-name", "hello", "--qualifier", "2")
	}
	if pc.AllocatedProvisionedConcurrentExecutions != 1 {
		t.Fatalf("READY with %+v", pc)
	}

	var acct struct {
		AccountLimit struct{ ConcurrentExecutions, UnreservedConcurrentExecutions int }
		AccountUsage struct{ FunctionCount int }
	}
	cli.lambda(&acct, "get-account-settings")
	if acct.AccountLimit.ConcurrentExecutions <= 0 || acct.AccountLimit.UnreservedConcurrentExecutions != acct.AccountLimit.ConcurrentExecutions-10 || acct.AccountUsage.FunctionCount != 1 {
		t.Fatalf("get-account-settings: %+v", acct)
	}

	// Errors exit non-zero and name Lambda's error type.
	missing := func(args ...string) {
		t.Helper()
		_, stderr, err := cli.run(append([]string{"--endpoint-url", cli.endpoint, "lambda"}, args...)...)
		if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
			t.Fatalf("aws lambda %s: exit %v, stderr %q; want non-zero and ResourceNotFoundException", strings.Join(args, " "), err, stderr)
		}
	}
	missing("invoke", "--function-name", "missing", "missing.json")

	cli.lambda(nil, "delete-function", "--function-name", "hello")
	missing("get-function", "--function-name", "hello")
}
