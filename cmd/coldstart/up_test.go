package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/ports"
	"github.com/coldstart-dev/coldstart/internal/syncbuf"
)

// syncBuffer is a log a node writes while the test polls it.
type syncBuffer = syncbuf.Buffer

// startUp runs `coldstart up` in-process until the returned stop is called,
// after it printed "ready".
func startUp(t *testing.T, args ...string) (stop func()) {
	t.Helper()
	stop, _ = startUpOut(t, args...)
	return stop
}

// startUpOut is startUp that also returns what `coldstart up` printed.
func startUpOut(t *testing.T, args ...string) (stop func(), stdout *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"up"}, args...), &out, &errb) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "\nready\n") {
		select {
		case code := <-done:
			t.Fatalf("up exited with %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("up not ready: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("up exited with %d: %s", code, errb.String())
		}
	}, &out
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpRestartKeepsState: `coldstart up` prints its URLs and "ready", shuts
// down on cancel (Ctrl-C), and a restart on the same data directory keeps
// functions and limits (Raft state reloads, no second bootstrap) and its
// cluster secret, which it writes with mode 0600 and never prints.
func TestUpRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster twice")
	}
	data := t.TempDir()
	p, err := ports.Free("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://127.0.0.1:" + strconv.Itoa(p[0])
	args := []string{"--data", data, "--listen", "127.0.0.1:" + strconv.Itoa(p[0]), "--admin", "127.0.0.1:" + strconv.Itoa(p[2])}
	stop, out := startUpOut(t, args...)
	secretPath := filepath.Join(data, "cluster-secret")
	fi, err := os.Stat(secretPath)
	if err != nil {
		t.Fatalf("no cluster secret file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", secretPath, fi.Mode().Perm())
	}
	first, err := os.ReadFile(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), secretPath) {
		t.Errorf("the secret's path is not printed:\n%s", out.String())
	}
	if hexSecret := strings.TrimSpace(string(first)); len(hexSecret) != 64 || strings.Contains(out.String(), hexSecret) {
		t.Fatalf("secret of %d hex digits, or printed:\n%s", len(hexSecret), out.String())
	}
	if code, body := httpDo(t, "POST", gw+"/2015-03-31/functions", `{"FunctionName":"keep","Runtime":"synthetic","MemorySize":256,"Timeout":3,"Coldstart":{"Duration":"2ms","ColdStart":"5ms"}}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := httpDo(t, "PUT", gw+"/coldstart/v1/account/limit", `{"ConcurrentExecutions":77}`); code != 200 {
		t.Fatalf("set limit: %d %s", code, body)
	}
	// The second gateway takes the next port.
	if code, _ := httpDo(t, "POST", "http://127.0.0.1:"+strconv.Itoa(p[0]+1)+"/2015-03-31/functions/keep/invocations", `{}`); code != 200 {
		t.Fatalf("invoke through the second gateway: %d", code)
	}
	stop()

	stop = startUp(t, args...)
	defer stop()
	if again, err := os.ReadFile(secretPath); err != nil || !bytes.Equal(again, first) {
		t.Fatalf("cluster secret not kept across restart: %v", err)
	}
	if code, body := httpDo(t, "GET", gw+"/2015-03-31/functions/keep", ""); code != 200 || !strings.Contains(body, `"MemorySize":256`) {
		t.Fatalf("function lost across restart: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", gw+"/2016-08-19/account-settings/", ""); code != 200 || !strings.Contains(body, `"ConcurrentExecutions":77`) {
		t.Fatalf("limit lost across restart: %d %s", code, body)
	}
	if code, body := httpDo(t, "POST", gw+"/2015-03-31/functions/keep/invocations", `{}`); code != 200 {
		t.Fatalf("invoke after restart: %d %s", code, body)
	}
}
