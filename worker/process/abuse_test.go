package process

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// healthyAfter checks the host still starts and serves a fresh sandbox.
func healthyAfter(t *testing.T) {
	t.Helper()
	s, _ := start(t, baseConfig(t, goCode(t), "provided.al2023"))
	if r := invoke(t, s, `{"op":"echo"}`, 5*time.Second); r.ErrorType != "" {
		t.Fatalf("fresh sandbox after abuse: %s", r.Payload)
	}
}

// forkBootstrap forks on each invoke until fork fails; every child parks forever.
const forkBootstrap = `#!/usr/bin/env python3
import json, os, signal, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
while True:
    r = urllib.request.urlopen(api + "/invocation/next")
    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
    r.read()
    n, err = 0, ""
    for _ in range(5000):
        try:
            pid = os.fork()
        except OSError as e:
            err = str(e)
            break
        if pid == 0:
            while True:
                signal.pause()
        n += 1
    body = json.dumps({"forked": n, "err": err}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/invocation/%s/response" % rid, data=body, method="POST")).read()
`

func TestAbuseForkBomb(t *testing.T) {
	cfg := baseConfig(t, codeWith(t, map[string]string{"bootstrap": forkBootstrap}), "provided.al2023")
	cfg.MaxProcs = 32
	s, _, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := footprintOf(s)
	r := invoke(t, s, `{}`, 10*time.Second)
	var got struct {
		Forked int    `json:"forked"`
		Err    string `json:"err"`
	}
	if err := json.Unmarshal(r.Payload, &got); err != nil || r.ErrorType != "" {
		t.Fatalf("%s %s: %v", r.ErrorType, r.Payload, err)
	}
	t.Logf("forked %d children before: %s", got.Forked, got.Err)
	if got.Forked >= 32 || !strings.Contains(got.Err, "Resource temporarily unavailable") {
		t.Fatalf("fork bomb not bounded by MaxProcs=32: %+v", got)
	}
	if n := len(f.live()); n < got.Forked {
		t.Errorf("%d live processes, the bomb made %d", n, got.Forked)
	}
	s.Close("SPINDOWN")
	assertGone(t, f)
	healthyAfter(t)
}

func TestAbuseMemoryHog(t *testing.T) {
	cfg := baseConfig(t, goCode(t), "provided.al2023")
	cfg.MemoryMB = 128
	s, _ := start(t, cfg)
	f := footprintOf(s)
	r, err := s.Invoke(t.Context(), Invocation{RequestID: "hog", Payload: []byte(`{"op":"alloc","mb":512}`), Deadline: time.Now().Add(20 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	e := decodeErr(t, r.Payload)
	if r.ErrorType != "Runtime.ExitError" || !r.Reset || !strings.Contains(e.Message, "out of memory") || !strings.Contains(e.Message, "signal: killed") ||
		!strings.HasPrefix(e.Message, "RequestId: hog Error: Runtime exited with error") {
		t.Fatalf("%+v %s", r.ErrorType, r.Payload)
	}
	t.Logf("killed: %s (MaxMemoryMB %d)", e.Message, r.MaxMemoryMB)
	if r.MaxMemoryMB < 100 || r.MaxMemoryMB > 128 {
		t.Errorf("MaxMemoryMB = %d, want near the 128 MB limit", r.MaxMemoryMB)
	}
	assertGone(t, f)
	healthyAfter(t)
}

func TestMaxMemoryMeasured(t *testing.T) {
	cfg := baseConfig(t, goCode(t), "provided.al2023")
	cfg.MemoryMB = 512
	s, _ := start(t, cfg)
	r := invoke(t, s, `{"op":"alloc","mb":60}`, 10*time.Second)
	if r.ErrorType != "" {
		t.Fatal(string(r.Payload))
	}
	t.Logf("MaxMemoryMB %d", r.MaxMemoryMB)
	if r.MaxMemoryMB < 50 || r.MaxMemoryMB > 128 {
		t.Errorf("MaxMemoryMB = %d after allocating 60 MB", r.MaxMemoryMB)
	}
}

func TestAbuseBusyLoopPastTimeout(t *testing.T) {
	cfg := baseConfig(t, codeWith(t, map[string]string{"app.py": "def h(e, c):\n    while True:\n        pass\n"}), "python3.12")
	cfg.Handler = "app.h"
	if !RuntimeSupported(cfg.Runtime) {
		t.Skip("no python3")
	}
	s, _ := start(t, cfg)
	f := footprintOf(s)
	r := invoke(t, s, `{}`, 200*time.Millisecond)
	if r.ErrorType != "Sandbox.Timedout" || !r.Reset {
		t.Fatalf("%+v %s", r.ErrorType, r.Payload)
	}
	assertGone(t, f)
	healthyAfter(t)
}

func TestAbuseChildIgnoresSIGTERM(t *testing.T) {
	s, _, err := Start(t.Context(), baseConfig(t, goCode(t), "provided.al2023"))
	if err != nil {
		t.Fatal(err)
	}
	f := footprintOf(s)
	r := invoke(t, s, `{"op":"child-ignore-term"}`, 5*time.Second)
	var pid int
	if err := json.Unmarshal(r.Payload, &pid); err != nil || pid <= 0 {
		t.Fatalf("%s", r.Payload)
	}
	waitFor(t, 3*time.Second, "the child to exec sleep", func() bool {
		p, ok := readStat(pid)
		return ok && p.state != 'Z' && strings.Contains(readComm(pid), "sleep")
	})
	s.Close("SPINDOWN")
	assertGone(t, f)
	healthyAfter(t)
}

func TestAbuseSetsidEscape(t *testing.T) {
	s, _, err := Start(t.Context(), baseConfig(t, goCode(t), "provided.al2023"))
	if err != nil {
		t.Fatal(err)
	}
	f := footprintOf(s)
	r := invoke(t, s, `{"op":"setsid-child"}`, 5*time.Second)
	var pid int
	if err := json.Unmarshal(r.Payload, &pid); err != nil || pid <= 0 {
		t.Fatalf("%s", r.Payload)
	}
	p, ok := readStat(pid)
	if !ok || p.pgid == s.PID() {
		t.Fatalf("child %d did not leave the process group: %+v", pid, p)
	}
	// let the monitor see it (needed without a sandbox uid, where it is tracked by lineage)
	s.sample(true)
	s.Close("SPINDOWN")
	assertGone(t, f)
	if p, ok := readStat(pid); ok && p.state != 'Z' {
		t.Fatalf("escaped child %d survived Close", pid)
	}
	healthyAfter(t)
}
