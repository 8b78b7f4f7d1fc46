package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/drill"
	"github.com/coldstart-dev/coldstart/internal/ports"
)

// envDrillRedis makes the test binary a Redis server process (see
// TestDrillHelperRedis): the redis-down drill stops and continues a
// process, so the test needs one that is not itself.
const envDrillRedis = "COLDSTART_DRILL_TEST_REDIS"

// TestDrillHelperRedis is not a test: run as a child with envDrillRedis
// set, it serves Redis on that address until killed.
func TestDrillHelperRedis(t *testing.T) {
	addr := os.Getenv(envDrillRedis)
	if addr == "" {
		t.Skip("helper process for the redis-down drill")
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		t.Fatal(err)
	}
	select {} // until the parent kills it
}

// startRedisProcess runs TestDrillHelperRedis as a child process and
// returns its address and pid once it answers.
func startRedisProcess(t *testing.T) (string, int) {
	t.Helper()
	p, err := ports.Free("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(p[0])
	cmd := exec.Command(os.Args[0], "-test.run=^TestDrillHelperRedis$")
	cmd.Env = append(os.Environ(), envDrillRedis+"="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := pingRedis(addr, 10*time.Second); err != nil {
		t.Fatalf("helper Redis on %s: %v", addr, err)
	}
	return addr, cmd.Process.Pid
}

type upDrills struct {
	gateways, admin, data, redis string
	redisPID                     int
}

// run runs one drill with --json, answering with answer ("" reads the
// answer from drillStdin, as on a terminal).
func (c upDrills) run(t *testing.T, name, answer string, extra ...string) (*drill.Result, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	args := []string{"drill", "run", name, "--json", "--gateway", c.gateways, "--admin", c.admin, "--data", c.data}
	if answer != "" {
		args = append(args, "--answer", answer)
	}
	if name == "redis-down" && len(extra) == 0 {
		extra = []string{"--redis", "redis://" + c.redis, "--redis-pid", strconv.Itoa(c.redisPID)}
	}
	args = append(args, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errb)
	var r drill.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("drill %s: exit %d, no JSON result (%v): %s\nstderr:\n%s", name, code, err, out.String(), errb.String())
	}
	return &r, code, errb.String()
}

// TestDrillsAgainstUp runs every drill once against one `coldstart up`,
// answering right: each must be graded correct, exit 0, with its signal
// seen and coldstart check passing. Two drills run again with a wrong
// answer (graded wrong, exit 1); for the others the grader is applied to
// the outcome their right-answer run recorded, with a wrong answer.
func TestDrillsAgainstUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster and runs every drill")
	}
	redisAddr, redisPID := startRedisProcess(t)
	data := t.TempDir()
	p, err := ports.Free("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	c := upDrills{
		gateways: "http://127.0.0.1:" + strconv.Itoa(p[0]) + ",http://127.0.0.1:" + strconv.Itoa(p[0]+1),
		admin:    "127.0.0.1:" + strconv.Itoa(p[2]), data: data, redis: redisAddr, redisPID: redisPID,
	}
	stop := startUp(t, "--data", data, "--listen", "127.0.0.1:"+strconv.Itoa(p[0]), "--admin", c.admin, "--redis", "redis://"+redisAddr)
	defer stop()

	fullWrong := map[string]bool{"deploy-at-peak": true, "throttle-storm": true}
	for _, s := range drill.Specs {
		s := s
		t.Run(s.Name, func(t *testing.T) {
			start := time.Now()
			r, code, stderr := c.run(t, s.Name, s.Right)
			took := time.Since(start)
			t.Logf("%s: %s, time to diagnosis %d ms, check %v (%s)", s.Name, took.Round(100*time.Millisecond), r.TimeToDiagnosis, r.Check, r.CheckSummary)
			for _, e := range r.Evidence {
				t.Logf("  [%v] %s: %s", e.Present, e.What, e.Detail)
			}
			if code != drill.ExitPassed || !r.Valid || !r.Correct || !r.Passed || !r.Check {
				t.Fatalf("right answer: exit %d, valid %v, correct %v, check %v (%s); invalid: %s\nstderr:\n%s", code, r.Valid, r.Correct, r.Check, r.CheckSummary, r.Invalid, stderr)
			}
			if r.Answer != s.Right || r.Right != s.Right || r.Signal != s.Signal || r.Runbook != s.Link() || len(r.Fault) == 0 || r.Records == 0 {
				t.Errorf("result does not describe the run: %+v", r)
			}
			for _, e := range r.Evidence {
				if !e.Present {
					t.Errorf("graded although %q was not seen", e.What)
				}
			}
			wrong := wrongChoice(s)
			if s.Name == "reserved-provisioned" {
				interactive(t, c, s)
			}
			if s.Name == "redis-down" {
				notRedis(t, c)
			}
			if s.Name == "throttle-storm" {
				// The same as a person reads it.
				var out, errb bytes.Buffer
				code := run(context.Background(), []string{"drill", "run", s.Name, "--answer", wrong, "--gateway", c.gateways, "--admin", c.admin, "--data", c.data}, &out, &errb)
				for _, want := range []string{"What broke?", "WRONG: you chose", "time to diagnosis:", "decisive signal: " + s.Signal, "coldstart check over", "runbook: " + s.Link()} {
					if !strings.Contains(out.String(), want) {
						t.Errorf("text result lacks %q:\n%s", want, out.String())
					}
				}
				if code != drill.ExitWrong {
					t.Fatalf("wrong answer in text: exit %d\n%s\n%s", code, out.String(), errb.String())
				}
				return
			}
			if fullWrong[s.Name] {
				w, code, stderr := c.run(t, s.Name, wrong)
				if code != drill.ExitWrong || !w.Valid || w.Correct || w.Passed || w.Answer != wrong || w.Right != s.Right {
					t.Fatalf("wrong answer %s: exit %d, valid %v, correct %v, answer %q right %q\nstderr:\n%s", wrong, code, w.Valid, w.Correct, w.Answer, w.Right, stderr)
				}
				return
			}
			// The grader over what the right-answer run recorded.
			o := drill.Outcome{Drill: s.Name, Injected: r.Right, Fault: r.Fault, Evidence: r.Evidence, CheckOK: r.Check, Answer: wrong}
			g, err := drill.Grade(s, o)
			if err != nil || g.Correct || !g.Valid || g.ExitCode != drill.ExitWrong {
				t.Fatalf("wrong answer %s over the recorded outcome: %+v, %v", wrong, g, err)
			}
		})
	}
}

// interactive answers on the terminal: first something that is not a
// choice (asked again), then the right letter.
func interactive(t *testing.T, c upDrills, s drill.Spec) {
	t.Helper()
	right := ""
	for i, id := range s.Choices {
		if id == s.Right {
			right = drill.Letter(i)
		}
	}
	old := drillStdin
	drillStdin = strings.NewReader("z\n" + right + "\n")
	defer func() { drillStdin = old }()
	r, code, stderr := c.run(t, s.Name, "")
	if code != drill.ExitPassed || !r.Correct || r.Answer != s.Right {
		t.Fatalf("interactive answer %s: exit %d, correct %v, answer %q\nstderr:\n%s", right, code, r.Correct, r.Answer, stderr)
	}
	if !strings.Contains(stderr, "not one of the choices") {
		t.Errorf("an answer that is not a choice was not refused:\n%s", stderr)
	}
}

// notRedis runs redis-down against a process that is not the cluster's
// Redis: freezing it changes nothing, the decisive signal never appears,
// and the run must say it is not graded rather than grade the answer.
func notRedis(t *testing.T, c upDrills) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Log("no sleep binary: the not-graded run is skipped")
		return
	}
	cmd := exec.Command(sleep, "120")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	r, code, stderr := c.run(t, "redis-down", "redis-down", "--redis", "redis://"+c.redis, "--redis-pid", strconv.Itoa(cmd.Process.Pid))
	if code != drill.ExitInvalid || r.Valid || r.Correct || r.Passed || !strings.Contains(r.Invalid, "did not appear") {
		t.Fatalf("redis-down without Redis stopping: exit %d, valid %v, correct %v, invalid %q\nstderr:\n%s", code, r.Valid, r.Correct, r.Invalid, stderr)
	}
}

// wrongChoice is the first choice that is not the right one.
func wrongChoice(s drill.Spec) string {
	for _, id := range s.Choices {
		if id != s.Right {
			return id
		}
	}
	return ""
}

// TestDrillCommandErrors: list names every drill; a drill that does not
// exist, an answer that is not a choice and a target that cannot be used
// are refused before anything is injected.
func TestDrillCommandErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"drill", "list"}, &out, &errb); code != 0 {
		t.Fatalf("drill list: %d %s", code, errb.String())
	}
	for _, s := range drill.Specs {
		if !strings.Contains(out.String(), s.Name) {
			t.Errorf("drill list does not name %s:\n%s", s.Name, out.String())
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"drill", "run", "gremlins"}, drill.ExitUsage, `no drill "gremlins"`},
		{[]string{"drill", "run", "quorum-loss", "--answer", "z"}, drill.ExitUsage, "not one of the choices"},
		{[]string{"drill", "run"}, drill.ExitUsage, "want one drill name"},
		{[]string{"drill", "run", "quorum-loss", "--answer", "c", "--target", "moon", "--gateway", "http://127.0.0.1:1"}, drill.ExitInvalid, ""},
		{[]string{"drill"}, drill.ExitUsage, "Usage: coldstart drill"},
	} {
		out.Reset()
		errb.Reset()
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, want %d; stderr %q, want %q", c.args, code, c.code, errb.String(), c.want)
		}
	}
}

func TestDrillHelpers(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\ntcp_port:6379\r\n"
	if got := infoField(info, "process_id"); got != "4242" {
		t.Errorf("process_id = %q", got)
	}
	if got := infoField(info, "run_id"); got != "" {
		t.Errorf("a missing field reads %q", got)
	}
	for msg, want := range map[string]string{"kill placement-2 (leader)": "placement-2", "pause worker-1": "worker-1", "partition nats from everyone, nats included": "nats", "": "", "heal": ""} {
		if got := faultNode(msg); got != want {
			t.Errorf("faultNode(%q) = %q, want %q", msg, got, want)
		}
	}
	st := &api.Status{Nodes: []api.Node{{ID: "worker-1", State: "alive"}, {ID: "worker-2", State: "suspect"}, {ID: "worker-3", State: "dead"}, {ID: "placement-1", State: "leader"}}}
	for id, want := range map[string]bool{"worker-1": false, "worker-2": true, "worker-3": true, "placement-1": false, "worker-9": true} {
		if got := nodeDown(st, id); got != want {
			t.Errorf("nodeDown(%s) = %v, want %v", id, got, want)
		}
	}
	if nodeState(st, "worker-9") != "absent" || nodeState(st, "worker-3") != "dead" {
		t.Error("nodeState")
	}
}

// TestEveryDrillHasAScript: each drill of the catalogue has a script with
// every step, and no script is left without a drill.
func TestEveryDrillHasAScript(t *testing.T) {
	for _, s := range drill.Specs {
		mk, ok := scenarios[s.Name]
		if !ok {
			t.Errorf("drill %s has no script", s.Name)
			continue
		}
		if a := mk(); a.setup == nil || a.inject == nil || a.observe == nil || a.recover == nil {
			t.Errorf("drill %s: script lacks a step", s.Name)
		}
	}
	if len(scenarios) != len(drill.Specs) {
		t.Errorf("%d scripts for %d drills", len(scenarios), len(drill.Specs))
	}
}
