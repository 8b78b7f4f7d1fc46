package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDocker answers the docker commands composeTarget runs from an
// in-memory project, and records the ones that change something.
type fakeDocker struct {
	mu       sync.Mutex
	ctrs     []*fakeCtr
	networks []string
	calls    []string
}

type fakeCtr struct {
	id, service, status string
	cmd                 []string
	nets                map[string]bool
	port                string // published host port (gateways)
}

func (f *fakeDocker) run(_ context.Context, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	byID := func(id string) *fakeCtr {
		for _, c := range f.ctrs {
			if c.id == id {
				return c
			}
		}
		return nil
	}
	switch args[0] {
	case "ps":
		var ids []string
		for _, c := range f.ctrs {
			ids = append(ids, c.id)
		}
		return []byte(strings.Join(ids, "\n") + "\n"), nil
	case "inspect":
		var out []map[string]any
		for _, id := range args[1:] {
			c := byID(id)
			nets := map[string]any{}
			for n, on := range c.nets {
				if on {
					nets[n] = map[string]any{}
				}
			}
			ports := map[string]any{}
			if c.port != "" {
				ports["9000/tcp"] = []map[string]string{{"HostIp": "127.0.0.1", "HostPort": c.port}}
			}
			out = append(out, map[string]any{
				"Id": c.id, "Name": "/proj_" + c.service + "_1",
				"Config":          map[string]any{"Cmd": c.cmd, "Labels": map[string]string{"com.docker.compose.service": c.service}},
				"State":           map[string]any{"Status": c.status},
				"NetworkSettings": map[string]any{"Networks": nets, "Ports": ports},
			})
		}
		return json.Marshal(out)
	case "network":
		switch args[1] {
		case "ls":
			return []byte(strings.Join(f.networks, "\n") + "\n"), nil
		case "disconnect":
			f.calls = append(f.calls, strings.Join(args, " "))
			byID(args[3]).nets[args[2]] = false
			return nil, nil
		case "connect":
			f.calls = append(f.calls, strings.Join(args, " "))
			byID(args[len(args)-1]).nets[args[len(args)-2]] = true
			return nil, nil
		}
	case "kill", "start", "pause", "unpause":
		f.calls = append(f.calls, args[0]+" "+args[1])
		byID(args[1]).status = map[string]string{"kill": "exited", "start": "running", "pause": "paused", "unpause": "running"}[args[0]]
		return nil, nil
	}
	return nil, fmt.Errorf("fake docker: unexpected %v", args)
}

func (f *fakeDocker) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

// newFakeProject is a compose project whose gateway reports leader p2.
func newFakeProject(t *testing.T) (*composeTarget, *fakeDocker) {
	t.Helper()
	leader := "p2"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/coldstart/v1/status" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"leader":%q}`, leader)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	f := &fakeDocker{networks: []string{"proj_coldstart"}}
	add := func(id, svc string, cmd ...string) *fakeCtr {
		c := &fakeCtr{id: id, service: svc, status: "running", cmd: cmd, nets: map[string]bool{"proj_coldstart": true}}
		f.ctrs = append(f.ctrs, c)
		return c
	}
	add("aaaaaaaa01", "nats", "nats", "--listen", "0.0.0.0:4222")
	for i := 1; i <= 3; i++ {
		add(fmt.Sprintf("bbbbbbbb0%d", i), fmt.Sprintf("placement%d", i), "placement", fmt.Sprintf("--id=p%d", i))
		add(fmt.Sprintf("cccccccc0%d", i), fmt.Sprintf("worker%d", i), "worker", fmt.Sprintf("--id=w%d", i))
	}
	add("dddddddd01", "gateway1", "gateway", "--id=g1").port = port
	t2 := &composeTarget{project: "proj", docker: f.run, hc: srv.Client()}
	return t2, f
}

func TestComposeTargetResolve(t *testing.T) {
	ctx := context.Background()
	ct, f := newFakeProject(t)
	for name, want := range map[string]string{
		"leader": "placement2", "follower": "placement1", "worker": "worker1", "gateway": "gateway1",
		"p3": "placement3", "worker2": "worker2", "proj_nats_1": "nats", "cccccccc03": "worker3",
	} {
		got, err := ct.Resolve(ctx, name)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := ct.Resolve(ctx, "placement9"); !errors.Is(err, ErrNoNode) {
		t.Errorf("Resolve(placement9): %v, want ErrNoNode", err)
	}
	// The gateway still names a dead leader: leader waits, then says so.
	f.ctrs[3].status = "exited" // placement2
	ct.leaderWait = 300 * time.Millisecond
	if _, err := ct.Resolve(ctx, "leader"); !errors.Is(err, ErrNoNode) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Resolve(leader) with the named leader exited: %v, want ErrNoNode saying it is not running", err)
	}
	f.ctrs[3].status = "running"
	// worker picks a running worker: the first is paused.
	f.ctrs[2].status = "paused"
	if got, err := ct.Resolve(ctx, "worker"); err != nil || got != "worker2" {
		t.Errorf("Resolve(worker) with worker1 paused = %q, %v; want worker2", got, err)
	}
}

func TestComposeTargetApply(t *testing.T) {
	ctx := context.Background()
	ct, f := newFakeProject(t)
	steps := []struct{ verb, node, msg, call string }{
		{"kill", "leader", "kill placement2 (leader)", "kill bbbbbbbb02"},
		{"restart", "leader", "restart placement2 (leader)", "start bbbbbbbb02"},
		{"pause", "worker", "pause worker1 (worker)", "pause cccccccc01"},
		{"resume", "worker", "resume worker1 (worker)", "unpause cccccccc01"},
		{"partition", "w3", "partition worker3 (w3)", "network disconnect proj_coldstart cccccccc03"},
		{"heal", "worker", "heal worker3 (worker)", "network connect --alias worker3 proj_coldstart cccccccc03"},
	}
	for _, s := range steps {
		msg, err := ct.Apply(ctx, s.verb, s.node)
		if err != nil || msg != s.msg {
			t.Fatalf("Apply(%s %s) = %q, %v; want %q", s.verb, s.node, msg, err, s.msg)
		}
		if got := f.lastCall(); got != s.call {
			t.Fatalf("Apply(%s %s) ran docker %q, want %q", s.verb, s.node, got, s.call)
		}
	}
	// A fresh target (another `coldstart chaos` process) remembers nothing:
	// restart leader still finds the killed placement node by its state.
	if _, err := ct.Apply(ctx, "kill", "placement3"); err != nil {
		t.Fatal(err)
	}
	fresh := &composeTarget{project: "proj", docker: f.run, hc: ct.hc}
	if msg, err := fresh.Apply(ctx, "restart", "leader"); err != nil || msg != "restart placement3 (leader)" {
		t.Fatalf("fresh restart leader = %q, %v; want placement3", msg, err)
	}
	for _, bad := range []struct {
		verb, node string
		want       error
	}{
		{"resume", "worker2", ErrNodeState},
		{"restart", "worker2", ErrNodeState},
		{"heal", "worker2", ErrNodeState},
		{"resume", "worker", ErrNoNode},
		{"explode", "worker2", ErrUnsupported},
	} {
		if _, err := ct.Apply(ctx, bad.verb, bad.node); !errors.Is(err, bad.want) {
			t.Errorf("Apply(%s %s): %v, want %v", bad.verb, bad.node, err, bad.want)
		}
	}
	nodes, err := ct.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nodes["placement2"], "leader") || !strings.Contains(nodes["placement1"], "id p1") {
		t.Errorf("Nodes: %v; want placement2 leader and ids", nodes)
	}
}

// The compose target refuses --from: docker cannot cut one pair only.
func TestComposeTargetFrom(t *testing.T) {
	if _, err := newChaosTarget(context.Background(), "compose", "", "", "p", "worker1"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("compose --from: %v, want ErrUnsupported", err)
	}
}
