package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/roles"
)

// serveAdmin starts the loopback admin endpoint of `coldstart up`: list,
// kill and restart nodes, pause, resume, partition and heal them. Every request needs the token, which is written to
// DATA/admin-token (mode 0600) so the CLI on the same machine can read it.
func (c *embedded) serveAdmin(addr, dataDir string) (string, error) {
	token := os.Getenv("COLDSTART_ADMIN_TOKEN")
	if token == "" {
		var b [16]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	if err := os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "admin token required (Authorization: Bearer TOKEN)", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /coldstart/v1/nodes", auth(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		out := map[string]string{}
		for _, id := range c.order {
			out[id] = "stopped"
			if n := c.nodes[id]; n != nil {
				out[id] = "running"
				if n.Placement != nil && n.Placement.IsLeader() {
					out[id] += ", leader"
				}
			}
			if d := c.fault.Describe(id); d != "" {
				out[id] += ", " + d
			}
		}
		c.mu.Unlock()
		if d := c.fault.Describe(faultnet.NATS); d != "" {
			out[faultnet.NATS] = "running, " + d
		}
		json.NewEncoder(w).Encode(out)
	}))
	for _, verb := range []string{"kill", "restart"} {
		verb := verb
		mux.HandleFunc("POST /coldstart/v1/chaos/"+verb+"/{node}", auth(func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("node")
			id, err := c.resolveKill(verb, name)
			if err == nil {
				if verb == "kill" {
					err = c.kill(id)
				} else {
					err = c.start(id)
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			label := id
			if id != name {
				label += " (" + name + ")"
			}
			c.log.Warn("chaos: "+verb, "node", id)
			c.announce(verb, id, verb+" "+label)
			fmt.Fprintf(w, "%s %s\n", verb, label)
		}))
	}
	for _, verb := range []string{"pause", "resume", "partition", "heal"} {
		verb := verb
		mux.HandleFunc("POST /coldstart/v1/chaos/"+verb+"/{node}", auth(func(w http.ResponseWriter, r *http.Request) {
			msg, err := c.applyFault(verb, r.PathValue("node"), r.URL.Query().Get("from"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			c.log.Warn("chaos: " + msg)
			c.announce(verb, strings.Fields(msg)[1], msg)
			fmt.Fprintln(w, msg)
		}))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	c.stopAdmin = func() { srv.Close() }
	return token, nil
}

// announce puts a chaos verb on every gateway's timeline (fault_injected
// for kill, pause and partition; fault_cleared for the verbs that undo
// them), so the operator sees what was done next to its effects. It goes
// through a placement node untouched by any fault (the node just cut off
// would swallow it); with none, or with NATS itself cut off, the timeline
// shows only the effects.
func (c *embedded) announce(verb, node, detail string) {
	kind := "fault_injected"
	if verb == "restart" || verb == "resume" || verb == "heal" {
		kind = "fault_cleared"
	}
	c.mu.Lock()
	var via *roles.Node
	for _, id := range c.order {
		if n := c.nodes[id]; n != nil && n.Placement != nil && n.NC != nil && id != node && c.fault.Describe(id) == "" {
			via = n
			break
		}
	}
	c.mu.Unlock()
	if via == nil {
		return
	}
	ev := gateway.TimelineEvent{TimeMs: time.Now().UnixMilli(), Kind: kind, Node: node, Detail: "chaos: " + detail}
	if err := gateway.AnnounceTimeline(via.NC, ev); err != nil {
		c.log.Warn("chaos: not announced on the timeline", "err", err)
	}
}

func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "inject" || args[0] == "clear") {
		return chaosInject(ctx, args[0], args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	admin := fs.String("admin", envOr("COLDSTART_ADMIN", "127.0.0.1:9100"), "admin address of `coldstart up`")
	data := fs.String("data", envOr("COLDSTART_DATA", "./.coldstart"), "data directory of `coldstart up` (holds admin-token)")
	from := fs.String("from", "", "partition only: comma-separated `nodes` to cut NODE from (ids, aliases, nats); default everyone, NATS included")
	target := fs.String("target", envOr("COLDSTART_CHAOS_TARGET", "up"), "where the faults go: up (the admin endpoint of `coldstart up`) or compose (the containers of a docker-compose cluster)")
	project := fs.String("project", "", "with --target compose: the compose project (default $COMPOSE_PROJECT_NAME, else the one running coldstart)")
	pid := fs.Int("pid", 0, "pause|resume process `PID` with SIGSTOP|SIGCONT instead of asking coldstart up (roles run as separate processes)")
	pos, code := parseCmd(fs, args, stdout, stderr, "coldstart chaos list | kill|restart|pause|resume|heal NODE | partition NODE [--from a,b] [--target up|compose] | --pid PID pause|resume",
		`Faults for the nodes of a running `+"`coldstart up`"+` (--target up, the default) or of a
docker-compose cluster (--target compose):
  kill NODE        a crash: no goodbye to the cluster; restart NODE brings it back
  pause NODE       freeze the network around NODE: its connections stay open and carry
                   nothing, its dials hang, its gossip is lost; resume NODE delivers what
                   was held. Its goroutines keep running (a paused leader campaigns).
  partition NODE   drop all traffic, both ways, between NODE and the --from nodes (default:
                   every other node and NATS); heal NODE removes its partitions
NODE is a node id, nats (the NATS server: a hub, so cutting a node from it cuts it from
everything sent over NATS), or an alias resolved when the command runs: leader (the Raft
leader), follower (the first placement node that is not leader), placement, worker,
gateway (the first running node of that role). The output names the node. resume and heal
with an alias act on the node the same alias named for pause or partition.
Roles run as separate processes (coldstart placement|worker|gateway) have no fault layer:
there pause and resume are SIGSTOP and SIGCONT, which freeze the whole process, timers
included: coldstart chaos --pid PID pause (kill -STOP PID), --pid PID resume (kill -CONT PID).
The token is read from $COLDSTART_ADMIN_TOKEN or DATA/admin-token.
--target compose acts on the containers of the compose project (--project, default
$COMPOSE_PROJECT_NAME, else the one project running coldstart) with the docker CLI:
kill = docker kill (SIGKILL), restart = docker start (the node keeps its volume),
pause|resume = docker pause|unpause (the whole process frozen), partition|heal = docker
network disconnect|connect on every network of the project (no --from). NODE is a
service (placement1, worker2, nats, redis, ...), a container name, a node id (p1, w2) or
an alias: leader is asked of a gateway's status endpoint; restart, resume and heal with an
alias pick a node of that role that is down, paused or cut off.`,
		"coldstart chaos pause leader && coldstart status && coldstart chaos resume leader\n  coldstart chaos kill leader --target compose && coldstart chaos restart leader --target compose\n  coldstart chaos partition worker-1 --from placement-1,placement-2,placement-3\n  coldstart chaos --pid 4242 pause")
	if code >= 0 {
		return code
	}
	if *pid != 0 {
		if len(pos) != 1 || (pos[0] != "pause" && pos[0] != "resume") {
			fmt.Fprintln(stderr, "coldstart chaos: --pid goes with pause or resume (see --help)")
			return 2
		}
		sig, err := signalPID(*pid, pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "coldstart chaos: %s pid %d: %v\n", pos[0], *pid, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s pid %d (%s)\n", pos[0], *pid, sig)
		return 0
	}
	if len(pos) == 0 || (pos[0] == "list" && len(pos) != 1) || (pos[0] != "list" && (!isChaosVerb(pos[0]) || len(pos) != 2)) {
		fmt.Fprintln(stderr, "coldstart chaos: want list, or kill, restart, pause, resume, partition or heal NODE (see --help)")
		return 2
	}
	if *from != "" && pos[0] != "partition" {
		fmt.Fprintln(stderr, "coldstart chaos: --from goes with partition")
		return 2
	}
	t, err := newChaosTarget(ctx, *target, *admin, *data, *project, *from)
	if err != nil {
		fmt.Fprintln(stderr, "coldstart chaos:", err)
		return 2
	}
	if pos[0] == "list" {
		nodes, err := t.Nodes(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "coldstart chaos:", err)
			return 1
		}
		ids := make([]string, 0, len(nodes))
		for id := range nodes {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(stdout, "%-13s %s\n", id, nodes[id])
		}
		return 0
	}
	msg, err := t.Apply(ctx, pos[0], pos[1])
	if err != nil {
		fmt.Fprintln(stderr, "coldstart chaos:", err)
		return 1
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// applyFault applies a fault verb to the node name designates and says
// which node that was.
func (c *embedded) applyFault(verb, name, from string) (string, error) {
	id, err := c.resolveFault(verb, name)
	if err != nil {
		return "", err
	}
	label := id
	if id != name {
		label += " (" + name + ")"
	}
	switch verb {
	case "pause":
		c.fault.Pause(id)
	case "resume":
		c.fault.Resume(id)
	case "heal":
		c.fault.Heal(id)
	case "partition":
		var cut []string
		for _, f := range strings.Split(from, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			fid, err := c.resolve(f)
			if err != nil {
				return "", fmt.Errorf("--from: %w", err)
			}
			if fid == id {
				return "", fmt.Errorf("--from %s: that is %s itself", f, id)
			}
			cut = append(cut, fid)
		}
		c.fault.Partition(id, cut...)
		if len(cut) == 0 {
			return "partition " + label + " from everyone, nats included", nil
		}
		return "partition " + label + " from " + strings.Join(cut, ","), nil
	}
	return verb + " " + label, nil
}

// resolveFault resolves NODE for a fault verb. An alias given to resume or
// heal names the node it named when the fault began (the paused leader is
// leader no more), as long as that node still has the fault.
func (c *embedded) resolveFault(verb, name string) (string, error) {
	kind := map[string]string{"pause": "pause", "resume": "pause", "partition": "partition", "heal": "partition"}[verb]
	if verb == "resume" || verb == "heal" {
		c.mu.Lock()
		id, ok := c.picked[kind+" "+name]
		c.mu.Unlock()
		if ok {
			from, all := c.fault.Partitioned(id)
			if (kind == "pause" && c.fault.Paused(id)) || (kind == "partition" && (all || len(from) > 0)) {
				return id, nil
			}
		}
	}
	id, err := c.resolve(name)
	if err == nil && roles.IsAlias(name) && (verb == "pause" || verb == "partition") {
		c.mu.Lock()
		if c.picked == nil {
			c.picked = map[string]string{}
		}
		c.picked[kind+" "+name] = id
		c.mu.Unlock()
	}
	return id, err
}

// resolveKill resolves NODE for kill and restart. kill takes an alias
// (leader, follower, worker, gateway) resolved now; restart with the same
// alias restarts the node that kill picked (a dead node leads nothing).
func (c *embedded) resolveKill(verb, name string) (string, error) {
	if !roles.IsAlias(name) {
		return name, nil
	}
	if verb == "restart" {
		c.mu.Lock()
		defer c.mu.Unlock()
		if id, ok := c.picked["kill "+name]; ok {
			return id, nil
		}
		return "", fmt.Errorf("restart %s: no node was killed as %s; name the node", name, name)
	}
	id, err := c.resolve(name)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.picked == nil {
		c.picked = map[string]string{}
	}
	c.picked["kill "+name] = id
	c.mu.Unlock()
	return id, nil
}

// resolve turns a node id, nats or an alias (roles.Pick) into a node id.
func (c *embedded) resolve(name string) (string, error) {
	if name == faultnet.NATS {
		return name, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !roles.IsAlias(name) {
		if _, ok := c.starters[name]; !ok {
			return "", fmt.Errorf("no node %q (want a node id, nats, or one of %s)", name, strings.Join(roles.Aliases, ", "))
		}
		return name, nil
	}
	var nodes []*roles.Node
	for _, id := range c.order {
		if n := c.nodes[id]; n != nil {
			nodes = append(nodes, n)
		}
	}
	return roles.Pick(name, nodes)
}
