package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/secret"
)

// TestRolesAsSeparateProcesses starts NATS, 3 placement nodes, a worker and
// a gateway as separate coldstart processes on loopback and checks that
// they form one cluster: a function created through the gateway runs cold,
// then warm. Every process reads the cluster secret from the file named by
// COLDSTART_CLUSTER_SECRET_FILE, so NATS authenticates them and gossip is
// encrypted.
func TestRolesAsSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "coldstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ports, err := freePorts("127.0.0.1", 12)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	natsURL := "nats://" + addr(0)
	peers := "p1=" + addr(1) + ",p2=" + addr(2) + ",p3=" + addr(3)
	seeds := addr(4) + "," + addr(5)
	secretFile := filepath.Join(dir, "cluster-secret")
	if _, _, err := secret.LoadOrCreate(secretFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(args ...string) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "COLDSTART_CLUSTER_SECRET_FILE="+secretFile)
		out, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "ready") {
					close(ready)
					io.Copy(io.Discard, out)
					return
				}
			}
		}()
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			t.Fatalf("%v not ready: %s", args, stderr.String())
		}
	}
	start("nats", "--listen", addr(0), "--store", filepath.Join(dir, "nats"))
	// Placement nodes wait for each other's Raft: start them together.
	done := make(chan struct{}, 3)
	for i := 1; i <= 3; i++ {
		go func(i int) {
			start("placement", "--id", "p"+strconv.Itoa(i), "--raft", addr(i), "--peers", peers, "--data", filepath.Join(dir, "p"), "--nats", natsURL, "--gossip", addr(3+i), "--join", seeds)
			done <- struct{}{}
		}(i)
	}
	for i := 0; i < 3; i++ {
		<-done
	}
	start("worker", "--id", "w1", "--nats", natsURL, "--gossip", addr(7), "--join", seeds)
	start("gateway", "--id", "g1", "--listen", addr(8), "--nats", natsURL, "--gossip", addr(9), "--join", seeds)
	gw := "http://" + addr(8)

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Post(gw+"/2015-03-31/functions", "application/json", strings.NewReader(`{"FunctionName":"f","Runtime":"synthetic","MemorySize":128,"Timeout":3,"Coldstart":{"Duration":"5ms","ColdStart":"10ms"}}`))
		if err == nil && resp.StatusCode == 201 {
			resp.Body.Close()
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("create function never succeeded: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var colds []string
	for deadline := time.Now().Add(20 * time.Second); len(colds) < 2; {
		resp, err := http.Post(gw+"/2015-03-31/functions/f/invocations", "application/json", strings.NewReader(`{}`))
		if err == nil {
			if resp.StatusCode == 200 {
				colds = append(colds, resp.Header.Get("X-Coldstart-Cold"))
			}
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("invocations across processes failed: %v %v", err, colds)
		}
	}
	if colds[0] != "true" || colds[1] != "false" {
		t.Fatalf("cold then warm expected, got %v", colds)
	}
}
