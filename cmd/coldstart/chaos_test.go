package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/ports"
)

func runChaosCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"chaos"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChaosPauseLeaderAgainstUp: `coldstart chaos pause leader` names the
// leader it paused, the others elect a new one, and `resume leader`
// resumes the same node; partition and heal name and clear their faults.
func TestChaosPauseLeaderAgainstUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	data := t.TempDir()
	p, err := ports.Free("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	admin := "127.0.0.1:" + strconv.Itoa(p[1])
	stop := startUp(t, "--data", data, "--listen", "127.0.0.1:"+strconv.Itoa(p[0]), "--admin", admin, "--workers", "1", "--gateways", "1")
	defer stop()
	chaos := func(args ...string) (int, string, string) {
		return runChaosCmd(append([]string{"--admin", admin, "--data", data}, args...)...)
	}
	list := func() map[string]string {
		code, out, errs := chaos("list")
		if code != 0 {
			t.Fatalf("chaos list: %d %s", code, errs)
		}
		m := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				m[f[0]] = strings.TrimSpace(strings.TrimPrefix(line, f[0]))
			}
		}
		return m
	}

	code, out, errs := chaos("pause", "leader")
	m := regexp.MustCompile(`^pause (placement-\d) \(leader\)\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("chaos pause leader: %d %q %s", code, out, errs)
	}
	paused := m[1]
	var nodes map[string]string
	waitUntil(t, "a new leader while "+paused+" is paused", 5*time.Second, func() bool {
		nodes = list()
		leaders := 0
		for id, st := range nodes {
			if strings.Contains(st, "leader") {
				if id == paused {
					return false
				}
				leaders++
			}
		}
		return leaders == 1 && strings.Contains(nodes[paused], "paused")
	})

	if code, out, errs := chaos("resume", "leader"); code != 0 || out != "resume "+paused+" (leader)\n" {
		t.Fatalf("chaos resume leader: %d %q %s; want it to resume %s", code, out, errs, paused)
	}
	if st := list()[paused]; strings.Contains(st, "paused") {
		t.Fatalf("%s after resume: %s", paused, st)
	}
	code, out, errs = chaos("partition", "worker", "--from", "leader,nats")
	m = regexp.MustCompile(`^partition worker-1 \(worker\) from (placement-\d),nats\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("chaos partition worker --from leader,nats: %d %q %s", code, out, errs)
	}
	if st := list()["worker-1"]; !strings.Contains(st, "partitioned from nats,"+m[1]) {
		t.Fatalf("worker-1 while partitioned: %s", st)
	}
	if code, out, errs := chaos("heal", "worker"); code != 0 || out != "heal worker-1 (worker)\n" {
		t.Fatalf("chaos heal worker: %d %q %s", code, out, errs)
	}
	if st := list()["worker-1"]; st != "running" {
		t.Fatalf("worker-1 after heal: %s", st)
	}
	if code, _, errs := chaos("pause", "no-such-node"); code != 1 || !strings.Contains(errs, "no node") {
		t.Fatalf("chaos pause no-such-node: %d %s", code, errs)
	}
	// kill leader kills the leader at the time; restart leader restarts
	// that node, and a new leader was elected meanwhile.
	waitUntil(t, "a leader", 5*time.Second, func() bool {
		for _, st := range list() {
			if strings.Contains(st, "leader") {
				return true
			}
		}
		return false
	})
	code, out, errs = chaos("kill", "leader")
	m = regexp.MustCompile(`^kill (placement-\d) \(leader\)\n$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("chaos kill leader: %d %q %s", code, out, errs)
	}
	killed := m[1]
	waitUntil(t, "a new leader after "+killed+" was killed", 5*time.Second, func() bool {
		for id, st := range list() {
			if id != killed && strings.Contains(st, "leader") {
				return true
			}
		}
		return false
	})
	if code, out, errs := chaos("restart", "leader"); code != 0 || out != "restart "+killed+" (leader)\n" {
		t.Fatalf("chaos restart leader: %d %q %s; want it to restart %s", code, out, errs, killed)
	}
	// Every verb is on the gateway's timeline, next to its effects.
	want := map[string]string{
		"fault_injected pause " + paused: "", "fault_cleared resume " + paused: "",
		"fault_injected partition worker-1": "", "fault_cleared heal worker-1": "",
		"fault_injected kill " + killed: "", "fault_cleared restart " + killed: "",
	}
	var seen []string
	waitUntil(t, "the chaos verbs on the timeline", 10*time.Second, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p[0]) + gateway.PathTimeline)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var page gateway.TimelinePage
		if json.NewDecoder(resp.Body).Decode(&page) != nil {
			return false
		}
		seen = seen[:0]
		found := map[string]bool{}
		for _, ev := range page.Events {
			if !strings.HasPrefix(ev.Detail, "chaos: ") {
				continue
			}
			f := strings.Fields(strings.TrimPrefix(ev.Detail, "chaos: "))
			key := ev.Kind + " " + strings.Join(f[:min(2, len(f))], " ")
			seen = append(seen, key)
			if _, ok := want[key]; ok && ev.Node == f[1] {
				found[key] = true
			}
		}
		return len(found) == len(want)
	})
	t.Logf("timeline: %v", seen)
}

// TestChaosPidPauseResume: --pid pause and resume stop and continue a
// process, as for a role run on its own.
func TestChaosPidPauseResume(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the process state from /proc")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	state := func() string {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
	}
	if code, out, errs := runChaosCmd("--pid", pid, "pause"); code != 0 || out != "pause pid "+pid+" (SIGSTOP)\n" {
		t.Fatalf("chaos --pid pause: %d %q %s", code, out, errs)
	}
	waitUntil(t, "process stopped", 5*time.Second, func() bool { return state() == "T" })
	if code, out, errs := runChaosCmd("--pid", pid, "resume"); code != 0 || out != "resume pid "+pid+" (SIGCONT)\n" {
		t.Fatalf("chaos --pid resume: %d %q %s", code, out, errs)
	}
	waitUntil(t, "process running again", 5*time.Second, func() bool { return state() != "T" })
	if code, _, _ := runChaosCmd("--pid", pid, "kill"); code != 2 {
		t.Fatalf("chaos --pid kill: exit %d, want 2", code)
	}
}
