package main

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// bootstrapScript is a provided.al2023 function: a Runtime API loop that
// prints a line per invocation and answers with its version and $GREETING.
// The interpreter is named by absolute path: sandboxes run as other uids
// with their own PATH, and a per-user python (pyenv) is not theirs to run.
const bootstrapScript = `#!/usr/bin/python3
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read() or b"{}")
    print("hello from CODE " + rid, flush=True)
    body = json.dumps({"code": "CODE", "greeting": os.environ.get("GREETING", ""), "event": event}).encode()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=body, method="POST")).read()
`

func writeFunction(t *testing.T, code string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte(strings.ReplaceAll(bootstrapScript, "CODE", code)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "data.txt"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCLIOnTheLambdaAPI drives the CLI against an in-process cluster with
// --strict-auth (so every command must sign): a function with code from a
// directory, invoke, update-code, publish, an alias with a weight,
// provisioned concurrency, accounts and their keys, and the function's logs
// read over NATS.
func TestCLIOnTheLambdaAPI(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3 for the function")
	}
	c := testcluster.New(t, testcluster.Options{Placement: 1, Gateways: 1, Workers: 1, StrictAuth: true})
	secretFile := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secretFile, secret.Encode(c.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := c.GatewayURL(0)
	t.Setenv("COLDSTART_GATEWAY", gw)
	t.Setenv("AWS_ACCESS_KEY_ID", "") // the built-in test/test key
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, args, &out, &errb)
		return code, out.String(), errb.String()
	}
	must := func(args ...string) string {
		t.Helper()
		code, out, errs := cli(args...)
		if code != 0 {
			t.Fatalf("coldstart %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	contains := func(what, text string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(text, s) {
				t.Fatalf("%s: no %q in:\n%s", what, s, text)
			}
		}
	}

	// Strict: an unsigned request is refused, so what follows passing
	// shows the CLI signs.
	resp, err := http.Get(gw + "/2015-03-31/functions/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned ListFunctions under --strict-auth: HTTP %d, want 403", resp.StatusCode)
	}

	v1, v2 := writeFunction(t, "v1"), writeFunction(t, "v2")
	out := must("function", "create", "echo", "--dir", v1, "--runtime", "provided.al2023", "--timeout", "5", "--env", "GREETING=hi")
	contains("create", out, "echo", "provided.al2023", "5 s", "GREETING", "sha256 ")
	contains("invoke v1", must("invoke", "echo", "--payload", `{"n":1}`), `"code": "v1"`, `"greeting": "hi"`, `"n": 1`)

	out = must("function", "publish", "echo", "--description", "first")
	contains("publish 1", out, "echo: version 1")
	out = must("function", "update-code", "echo", "--dir", v2)
	contains("update-code", out, "$LATEST")
	contains("invoke v2", must("invoke", "echo"), `"code": "v2"`)
	contains("publish 2", must("function", "publish", "echo"), "echo: version 2")
	out = must("function", "versions", "echo")
	contains("versions", out, "$LATEST", "\n1 ", "\n2 ", "first")
	contains("versions --json", must("function", "versions", "echo", "--json"), `"Versions"`)

	out = must("function", "alias", "create", "echo", "live", "--version", "1", "--weight", "2=0.5")
	contains("alias create", out, "echo:live -> version 1  (2: 50%)")
	contains("alias list", must("function", "alias", "list", "echo"), "live", "2: 50%")
	seen := map[string]bool{}
	for i := 0; i < 30 && len(seen) < 2; i++ {
		out := must("invoke", "echo", "--qualifier", "live")
		for _, v := range []string{"v1", "v2"} {
			if strings.Contains(out, `"code": "`+v+`"`) {
				seen[v] = true
			}
		}
	}
	if !seen["v1"] || !seen["v2"] {
		t.Fatalf("alias live with 2=0.5 ran only %v in 30 invocations", seen)
	}

	out = must("function", "update-config", "echo", "--memory", "256", "--env", "GREETING=yo")
	contains("update-config", out, "256 MB")
	contains("invoke after update-config", must("invoke", "echo"), `"greeting": "yo"`)

	out = must("function", "provisioned", "set", "echo", "--qualifier", "live", "--count", "1")
	contains("provisioned set", out, "echo:live", "requested 1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out = must("provisioned", "get", "echo", "--qualifier", "live")
		if strings.Contains(out, "status READY") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provisioned concurrency not READY within 20 s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	contains("provisioned get", out, "allocated 1")

	// Errors carry the SDK's typed code and exit 1.
	code, _, errs := cli("function", "versions", "missing")
	if code != 1 || !strings.Contains(errs, "ResourceNotFoundException: ") {
		t.Fatalf("versions of a missing function: exit %d, stderr %q", code, errs)
	}

	// Accounts: the operator creates one; its key acts as that account,
	// which sees none of the operator's functions.
	out = must("account", "create", "--id", "123456789012", "--limit", "10")
	contains("account create", out, "account 123456789012  concurrency limit 10")
	m := regexp.MustCompile(`export AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("account create printed no key:\n%s", out)
	}
	contains("account keys --create", must("account", "keys", "123456789012", "--create"), "AKCS", "export AWS_ACCESS_KEY_ID=")
	out = must("account", "keys", "123456789012")
	if n := strings.Count(out, "(not shown again)"); n != 2 {
		t.Fatalf("account keys: %d keys listed without secrets, want 2:\n%s", n, out)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", m[1])
	t.Setenv("AWS_SECRET_ACCESS_KEY", m[2])
	if code, _, errs := cli("function", "versions", "echo"); code != 1 || !strings.Contains(errs, "ResourceNotFoundException") {
		t.Fatalf("another account's function: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := cli("account", "create"); code != 1 || !strings.Contains(errs, "AccessDeniedException") {
		t.Fatalf("account create by a non-operator: exit %d, stderr %q", code, errs)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")

	// Logs: the function's own lines and the platform's, read over NATS.
	deadline = time.Now().Add(10 * time.Second)
	for {
		out = must("logs", "echo", "--nats", c.URL, "--cluster-secret-file", secretFile)
		if strings.Contains(out, "hello from v1") && strings.Contains(out, "hello from v2") && strings.Contains(out, "REPORT RequestId") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs lack the function's lines or REPORT:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	contains("logs", out, "START RequestId", "END RequestId", "REPORT RequestId")
	contains("logs --json", must("logs", "echo", "--nats", c.URL, "--cluster-secret-file", secretFile, "--json"), `"stream":"stdout"`, `"function":"echo"`)
	if code, _, errs := cli("logs", "echo", "--nats", c.URL); code != 1 || !strings.Contains(errs, "cannot read the logs stream") && !strings.Contains(errs, "NATS at") {
		t.Fatalf("logs without the cluster secret: exit %d, stderr %q", code, errs)
	}
}

func TestZipDirIsReproducibleAndKeepsExecBits(t *testing.T) {
	dir := writeFunction(t, "x")
	a, err := zipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A later mtime changes nothing: the same tree is the same bundle.
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "bootstrap"), later, later)
	b, err := zipDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("zipping the same tree twice gave different bytes")
	}
	zr, err := zip.NewReader(bytes.NewReader(a), int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, f := range zr.File {
		modes[f.Name] = f.Mode()
	}
	if modes["bootstrap"].Perm() != 0o755 || modes["lib/data.txt"].Perm() != 0o644 || !modes["lib/"].IsDir() {
		t.Fatalf("zip modes: %v", modes)
	}
}
