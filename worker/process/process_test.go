package process

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"
)

func TestGoEchoContextAndWarmGlobals(t *testing.T) {
	cfg := baseConfig(t, goCode(t), "provided.al2023")
	s, ph := start(t, cfg)
	if ph.RuntimeInit <= 0 || ph.SandboxCreate <= 0 {
		t.Errorf("phases not measured: %+v", ph)
	}
	if !s.Alive() || s.PID() <= 0 {
		t.Fatalf("alive=%v pid=%d", s.Alive(), s.PID())
	}
	deadline := time.Now().Add(5 * time.Second).Truncate(time.Millisecond)
	r, err := s.Invoke(context.Background(), Invocation{
		RequestID:     "req-1",
		Payload:       []byte(`{"op":"echo"}`),
		Deadline:      deadline,
		ClientContext: `{"custom":{"k":"v"}}`,
		TraceID:       "Root=1-abc",
	})
	if err != nil || r.ErrorType != "" {
		t.Fatalf("invoke: %v %+v %s", err, r, r.Payload)
	}
	var got struct {
		RequestID     string            `json:"requestId"`
		ARN           string            `json:"arn"`
		DeadlineMs    int64             `json:"deadlineMs"`
		ClientContext map[string]string `json:"clientContext"`
		Counter       int               `json:"counter"`
		FunctionName  string            `json:"functionName"`
		Memory        int               `json:"memory"`
		TraceID       string            `json:"traceId"`
	}
	if err := json.Unmarshal(r.Payload, &got); err != nil {
		t.Fatalf("%s: %v", r.Payload, err)
	}
	if got.RequestID != "req-1" || got.ARN != "arn:aws:lambda:eu-west-1:123456789012:function:fn" ||
		got.DeadlineMs != deadline.UnixMilli() || got.ClientContext["k"] != "v" || got.FunctionName != "fn" ||
		got.Memory != 256 || got.TraceID != "Root=1-abc" || got.Counter != 1 {
		t.Errorf("context as seen by the handler: %+v", got)
	}
	if r.Duration <= 0 || r.Reset || r.MaxMemoryMB <= 0 {
		t.Errorf("result: %+v", r)
	}
	r = invoke(t, s, `{"op":"echo"}`, 5*time.Second)
	json.Unmarshal(r.Payload, &got)
	if got.Counter != 2 {
		t.Errorf("globals did not persist across warm invokes: counter=%d", got.Counter)
	}
	r = invoke(t, s, `{"op":"log"}`, 5*time.Second)
	if !strings.Contains(string(r.Logs), "hello from the handler\n") || !strings.Contains(string(r.Logs), "and from stderr\n") {
		t.Errorf("invocation logs: %q", r.Logs)
	}
}

func TestGoEnvironment(t *testing.T) {
	os.Setenv("COLDSTART_HOST_SECRET", "leak")
	defer os.Unsetenv("COLDSTART_HOST_SECRET")
	cfg := baseConfig(t, goCode(t), "provided.al2")
	cfg.Env = map[string]string{"MY_VAR": "mine", "AWS_REGION": "evil", "LAMBDA_TASK_ROOT": "/evil", "TZ": "Europe/Paris"}
	cfg.Handler = "bootstrap"
	s, _ := start(t, cfg)
	r := invoke(t, s, `{"op":"env"}`, 5*time.Second)
	var env []string
	if err := json.Unmarshal(r.Payload, &env); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	want := map[string]string{
		"MY_VAR": "mine", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
		"LAMBDA_TASK_ROOT": cfg.CodeDir, "AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
		"AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn", "AWS_LAMBDA_RUNTIME_API": s.ln.Addr().String(),
		"TMPDIR": cfg.ScratchDir, "HOME": cfg.ScratchDir, "AWS_ACCESS_KEY_ID": "test", "_HANDLER": "bootstrap",
		"TZ": "Europe/Paris", "LANG": "en_US.UTF-8",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["COLDSTART_HOST_SECRET"]; ok {
		t.Error("host environment leaked into the sandbox")
	}
	if _, ok := m["AWS_EXECUTION_ENV"]; ok {
		t.Error("AWS_EXECUTION_ENV set for a custom runtime")
	}
	if r := invoke(t, s, `{"op":"write-tmp"}`, 5*time.Second); r.ErrorType != "" {
		t.Errorf("scratch dir not writable: %s", r.Payload)
	}
	if os.Geteuid() == 0 {
		if r := invoke(t, s, `{"op":"write-code"}`, 5*time.Second); r.ErrorType == "" {
			t.Error("code dir writable by the sandbox")
		}
	}
}

func TestGoReturnedError(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	r := invoke(t, s, `{"op":"error"}`, 5*time.Second)
	e := decodeErr(t, r.Payload)
	if r.ErrorType != "errorString" || e.Type != "errorString" || e.Message != "boom" || r.Reset {
		t.Fatalf("result %+v body %s", r, r.Payload)
	}
	if !s.Alive() {
		t.Fatal("sandbox died after a returned error")
	}
	if r := invoke(t, s, `{"op":"echo"}`, 5*time.Second); r.ErrorType != "" {
		t.Fatalf("warm invoke after error: %s", r.Payload)
	}
}

func TestGoPanicResets(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	f := footprintOf(s)
	r := invoke(t, s, `{"op":"panic"}`, 5*time.Second)
	var e messages.InvokeResponse_Error // aws-lambda-go's own error document
	if err := json.Unmarshal(r.Payload, &e); err != nil {
		t.Fatalf("%s: %v", r.Payload, err)
	}
	if r.ErrorType != "string" || e.Message != "kaboom" || len(e.StackTrace) == 0 || !r.Reset {
		t.Fatalf("result %+v body %s", r, r.Payload)
	}
	if s.Alive() {
		t.Error("sandbox alive after a panic")
	}
	assertGone(t, f)
	if _, err := s.Invoke(context.Background(), Invocation{Payload: []byte(`{}`)}); !errors.Is(err, ErrDead) {
		t.Errorf("invoke on a dead sandbox: %v", err)
	}
}

func TestGoTimeout(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	f := footprintOf(s)
	r, err := s.Invoke(context.Background(), Invocation{RequestID: "rid", Payload: []byte(`{"op":"spin"}`), Deadline: time.Now().Add(300 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	e := decodeErr(t, r.Payload)
	if r.ErrorType != "Sandbox.Timedout" || !r.Reset || e.Message != "RequestId: rid Error: Task timed out after 0.30 seconds" {
		t.Fatalf("result %+v body %s", r, r.Payload)
	}
	if r.Duration < 250*time.Millisecond {
		t.Errorf("duration %v", r.Duration)
	}
	assertGone(t, f)
	// the host stays usable: a fresh sandbox works
	s2, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	if r := invoke(t, s2, `{"op":"echo"}`, 5*time.Second); r.ErrorType != "" {
		t.Fatal(string(r.Payload))
	}
}

func TestGoInitExit(t *testing.T) {
	cfg := baseConfig(t, goCode(t), "provided.al2023")
	cfg.Env = map[string]string{"INIT_EXIT": "3"}
	e := startErr(t, cfg)
	if e.Type != "Runtime.ExitError" || !strings.Contains(e.Message, "exit status 3") {
		t.Fatalf("%+v", e)
	}
	if !strings.Contains(string(e.Logs), "exiting during init") {
		t.Errorf("init logs %q", e.Logs)
	}
}

func TestGoSIGTERMOnClose(t *testing.T) {
	cfg := baseConfig(t, goCode(t), "provided.al2023")
	cfg.Env = map[string]string{"ENABLE_SIGTERM": "1"}
	var logs logSink
	cfg.Log = logs.log
	s, _, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := footprintOf(s)
	s.mu.Lock()
	n := len(s.extList)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d extensions registered, want aws-lambda-go's SIGTERM one", n)
	}
	if r := invoke(t, s, `{"op":"echo"}`, 5*time.Second); r.ErrorType != "" {
		t.Fatal(string(r.Payload))
	}
	t0 := time.Now()
	s.Close("SPINDOWN")
	if !logs.has("SIGTERM received") {
		t.Error("the handler's SIGTERM callback did not run")
	}
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Errorf("Close took %v although the process exited on SIGTERM", d)
	}
	assertGone(t, f)
	s.Close("SPINDOWN") // idempotent
}

func TestGoResponseTooLarge(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	r := invoke(t, s, `{"op":"big"}`, 10*time.Second)
	if r.ErrorType != "Function.ResponseSizeTooLarge" {
		t.Fatalf("%+v %s", r.ErrorType, r.Payload)
	}
	// aws-lambda-go exits when /response is refused, so the sandbox resets.
	if !r.Reset {
		t.Errorf("Reset = false")
	}
}

func TestConcurrentInvokeRefused(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Invoke(context.Background(), Invocation{Payload: []byte(`{"op":"sleep","ms":300}`), Deadline: time.Now().Add(5 * time.Second)})
	}()
	waitFor(t, 5*time.Second, "first invocation delivered", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cur != nil && !s.cur.delivered.IsZero()
	})
	if _, err := s.Invoke(context.Background(), Invocation{Payload: []byte(`{}`)}); !errors.Is(err, ErrBusy) {
		t.Errorf("concurrent invoke: %v", err)
	}
	wg.Wait()
}

func TestRuntimeAPIRejectsUnknownID(t *testing.T) {
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	for _, p := range []string{"response", "error"} {
		resp, err := http.Post("http://"+s.ln.Addr().String()+"/2018-06-01/runtime/invocation/bogus/"+p, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !json.Valid(b) {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
	if r := invoke(t, s, `{"op":"echo"}`, 5*time.Second); r.ErrorType != "" {
		t.Fatal(string(r.Payload))
	}
}

const pyProvidedBootstrap = `#!/usr/bin/env python3
import json, os, sys, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
def post(path, body, headers={}):
    req = urllib.request.Request(api + path, data=body, method="POST", headers=headers)
    urllib.request.urlopen(req).read()
if os.environ.get("FAIL_INIT"):
    post("/init/error", b'{"errorType":"Custom.InitFailed","errorMessage":"no config"}')
    sys.exit(1)
while True:
    r = urllib.request.urlopen(api + "/invocation/next")
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    ev = json.loads(r.read())
    print("got", rid, flush=True)
    if ev.get("fail"):
        post("/invocation/%s/error" % rid, b'not json', {"Lambda-Runtime-Function-Error-Type": "Custom.Bad"})
        continue
    post("/invocation/%s/response" % rid, json.dumps({"echo": ev, "arn": r.headers["Lambda-Runtime-Invoked-Function-Arn"]}).encode())
`

func TestProvidedPythonBootstrap(t *testing.T) {
	cfg := baseConfig(t, codeWith(t, map[string]string{"bootstrap": pyProvidedBootstrap}), "provided")
	cfg.Version = "7"
	s, _ := start(t, cfg)
	r := invoke(t, s, `{"a":1}`, 5*time.Second)
	if r.ErrorType != "" || string(r.Payload) != `{"echo": {"a": 1}, "arn": "arn:aws:lambda:eu-west-1:123456789012:function:fn:7"}` {
		t.Fatalf("%+v %s", r, r.Payload)
	}
	if !strings.HasPrefix(string(r.Logs), "got ") {
		t.Errorf("logs %q", r.Logs)
	}
	r = invoke(t, s, `{"fail":true}`, 5*time.Second)
	e := decodeErr(t, r.Payload)
	if r.ErrorType != "Custom.Bad" || e.Message != "not json" || r.Reset {
		t.Fatalf("%+v %s", r, r.Payload)
	}

	cfg2 := baseConfig(t, cfg.CodeDir, "provided")
	cfg2.Env = map[string]string{"FAIL_INIT": "1"}
	if e := startErr(t, cfg2); e.Type != "Custom.InitFailed" || e.Message != "no config" {
		t.Fatalf("%+v", e)
	}
}

func TestEntrypointErrors(t *testing.T) {
	t.Run("missing bootstrap", func(t *testing.T) {
		cfg := baseConfig(t, codeWith(t, map[string]string{"README": "x"}), "provided.al2023")
		e := startErr(t, cfg)
		if e.Type != "Runtime.InvalidEntrypoint" || !strings.Contains(e.Message, "Couldn't find valid bootstrap(s): ["+filepath.Join(cfg.CodeDir, "bootstrap")) {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("not executable", func(t *testing.T) {
		code := codeWith(t, map[string]string{"bootstrap": "#!/bin/sh\n"})
		os.Chmod(filepath.Join(code, "bootstrap"), 0o644)
		if e := startErr(t, baseConfig(t, code, "provided.al2023")); e.Type != "Runtime.InvalidEntrypoint" || !strings.Contains(e.Message, "permission denied") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("bad interpreter line", func(t *testing.T) {
		code := codeWith(t, map[string]string{"bootstrap": "#!/nonexistent/interp\n"})
		if e := startErr(t, baseConfig(t, code, "provided.al2023")); e.Type != "Runtime.InvalidEntrypoint" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("exits during init", func(t *testing.T) {
		code := codeWith(t, map[string]string{"bootstrap": "#!/bin/sh\necho bye\nexit 2\n"})
		e := startErr(t, baseConfig(t, code, "provided.al2023"))
		if e.Type != "Runtime.ExitError" || !strings.Contains(e.Message, "exit status 2") || !strings.Contains(string(e.Logs), "bye") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("init timeout", func(t *testing.T) {
		code := codeWith(t, map[string]string{"bootstrap": "#!/bin/sh\nexec sleep 100\n"})
		cfg := baseConfig(t, code, "provided.al2023")
		cfg.InitTimeout = 200 * time.Millisecond
		if e := startErr(t, cfg); e.Type != "Sandbox.Timedout" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("missing interpreter", func(t *testing.T) {
		cfg := baseConfig(t, codeWith(t, map[string]string{"app.py": "def h(e, c): return 1\n"}), "python3.12")
		cfg.Handler = "app.h"
		cfg.Interpreters = map[string]string{"python": "/nonexistent/python3"}
		if e := startErr(t, cfg); e.Type != "Runtime.InvalidEntrypoint" || !strings.Contains(e.Message, "/nonexistent/python3") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("missing handler file", func(t *testing.T) {
		cfg := baseConfig(t, codeWith(t, map[string]string{"other.py": ""}), "python3.12")
		cfg.Handler = "app.h"
		if e := startErr(t, cfg); e.Type != "Runtime.InvalidEntrypoint" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("unsupported runtime", func(t *testing.T) {
		_, _, err := Start(context.Background(), baseConfig(t, goCode(t), "java21"))
		if err == nil || RuntimeSupported("java21") {
			t.Fatal("java21 accepted")
		}
	})
}

const pyApp = `
import os
calls = 0
def handler(event, context):
    global calls
    calls += 1
    if event.get("raise"):
        raise ValueError("bad value " + str(event["raise"]))
    print("python says hi")
    return {"calls": calls, "event": event, "rid": context.aws_request_id, "fn": context.function_name,
            "mem": context.memory_limit_in_mb, "arn": context.invoked_function_arn,
            "left": context.get_remaining_time_in_millis(), "exec": os.environ.get("AWS_EXECUTION_ENV")}
`

func TestPythonManagedRuntime(t *testing.T) {
	if !RuntimeSupported("python3.12") {
		t.Skip("no python3 usable by sandboxes")
	}
	cfg := baseConfig(t, codeWith(t, map[string]string{"app.py": pyApp, "broken.py": "import nonexistent_module_xyz\n"}), "python3.12")
	cfg.Handler = "app.handler"
	s, _ := start(t, cfg)
	r, err := s.Invoke(context.Background(), Invocation{RequestID: "py-1", Payload: []byte(`{"k":"v"}`), Deadline: time.Now().Add(5 * time.Second)})
	if err != nil || r.ErrorType != "" {
		t.Fatalf("%v %+v %s", err, r, r.Payload)
	}
	var got struct {
		Calls int               `json:"calls"`
		Event map[string]string `json:"event"`
		RID   string            `json:"rid"`
		FN    string            `json:"fn"`
		Mem   string            `json:"mem"`
		ARN   string            `json:"arn"`
		Left  int               `json:"left"`
		Exec  string            `json:"exec"`
	}
	json.Unmarshal(r.Payload, &got)
	if got.Calls != 1 || got.Event["k"] != "v" || got.RID != "py-1" || got.FN != "fn" || got.Mem != "256" ||
		got.ARN == "" || got.Left <= 0 || got.Left > 5000 || got.Exec != "AWS_Lambda_python3.12" {
		t.Errorf("%s", r.Payload)
	}
	if !strings.Contains(string(r.Logs), "python says hi") {
		t.Errorf("logs %q", r.Logs)
	}
	r = invoke(t, s, `{"raise":7}`, 5*time.Second)
	e := decodeErr(t, r.Payload)
	var raw struct {
		StackTrace []string `json:"stackTrace"`
	}
	json.Unmarshal(r.Payload, &raw)
	if r.ErrorType != "ValueError" || e.Message != "bad value 7" || len(raw.StackTrace) == 0 || r.Reset {
		t.Fatalf("%+v %s", r, r.Payload)
	}
	r = invoke(t, s, `{}`, 5*time.Second)
	json.Unmarshal(r.Payload, &got)
	if got.Calls != 3 {
		t.Errorf("module globals did not persist: %s", r.Payload)
	}

	t.Run("import error", func(t *testing.T) {
		c := baseConfig(t, cfg.CodeDir, "python3.11")
		c.Handler = "broken.handler"
		if e := startErr(t, c); e.Type != "Runtime.ImportModuleError" || !strings.Contains(e.Message, "nonexistent_module_xyz") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("handler not found", func(t *testing.T) {
		c := baseConfig(t, cfg.CodeDir, "python3.12")
		c.Handler = "app.nope"
		if e := startErr(t, c); e.Type != "Runtime.HandlerNotFound" {
			t.Fatalf("%+v", e)
		}
	})
}

const nodeApp = `
let calls = 0;
exports.handler = async (event, context) => {
  calls++;
  if (event.throw) { throw new TypeError("bad type"); }
  console.log("node says hi");
  return { calls, event, rid: context.awsRequestId, fn: context.functionName, left: context.getRemainingTimeInMillis(), exec: process.env.AWS_EXECUTION_ENV };
};
`

func TestNodeManagedRuntime(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not on PATH")
	}
	if !RuntimeSupported("nodejs20.x") {
		t.Fatal("node on PATH but nodejs20.x unsupported")
	}
	cfg := baseConfig(t, codeWith(t, map[string]string{"index.js": nodeApp}), "nodejs20.x")
	cfg.Handler = "index.handler"
	s, _ := start(t, cfg)
	r, err := s.Invoke(context.Background(), Invocation{RequestID: "node-1", Payload: []byte(`{"k":"v"}`), Deadline: time.Now().Add(5 * time.Second)})
	if err != nil || r.ErrorType != "" {
		t.Fatalf("%v %+v %s", err, r, r.Payload)
	}
	var got struct {
		Calls int               `json:"calls"`
		Event map[string]string `json:"event"`
		RID   string            `json:"rid"`
		FN    string            `json:"fn"`
		Left  int               `json:"left"`
		Exec  string            `json:"exec"`
	}
	json.Unmarshal(r.Payload, &got)
	if got.Calls != 1 || got.Event["k"] != "v" || got.RID != "node-1" || got.FN != "fn" || got.Left <= 0 || got.Exec != "AWS_Lambda_nodejs20.x" {
		t.Errorf("%s", r.Payload)
	}
	if !strings.Contains(string(r.Logs), "node says hi") {
		t.Errorf("logs %q", r.Logs)
	}
	r = invoke(t, s, `{"throw":true}`, 5*time.Second)
	e := decodeErr(t, r.Payload)
	if r.ErrorType != "TypeError" || e.Message != "bad type" || r.Reset {
		t.Fatalf("%+v %s", r, r.Payload)
	}
	r = invoke(t, s, `{}`, 5*time.Second)
	json.Unmarshal(r.Payload, &got)
	if got.Calls != 3 {
		t.Errorf("globals did not persist: %s", r.Payload)
	}
}

// TestHostScansDoNotGrowWithSandboxes: idle sandboxes share the /proc
// scans their monitors need, so 12 of them cost no more scans a second than
// one does (bounded by the shared scan's freshness, 20/s).
func TestHostScansDoNotGrowWithSandboxes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sandbox uids (and their shared scan) need root")
	}
	code := goCode(t)
	for i := 0; i < 12; i++ {
		start(t, baseConfig(t, code, "provided.al2023"))
	}
	before := hostScans.Load()
	t0 := time.Now()
	time.Sleep(time.Second) // the interval being measured, not a synchronisation
	rate := float64(hostScans.Load()-before) / time.Since(t0).Seconds()
	if rate > 25 {
		t.Fatalf("%.0f host scans/s with 12 idle sandboxes; want at most ~20", rate)
	}
	t.Logf("%.1f host scans/s with 12 idle sandboxes", rate)
}
