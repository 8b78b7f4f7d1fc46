package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/internal/roles"
)

// chaosTarget is where chaos verbs go: the admin endpoint of `coldstart up`
// (upTarget) or the containers of a docker-compose cluster
// (composeTarget). `coldstart chaos` and drills drive faults through it, so
// a scenario is written once for both.
type chaosTarget interface {
	// Resolve names the node that name designates right now: a node (id,
	// or for compose a service or container name) is checked to exist; an
	// alias (roles.Aliases) is resolved among the running nodes, leader by
	// asking the cluster.
	Resolve(ctx context.Context, name string) (string, error)
	// Apply applies one of chaosVerbs to node (a name or an alias) and
	// returns one line saying what it did: "VERB NODE", followed by
	// " (ALIAS)" when node was an alias. An alias given to restart, resume
	// or heal names a node that has that fault (the killed leader leads
	// nothing any more).
	Apply(ctx context.Context, verb, node string) (string, error)
	// Nodes maps every node to its state ("running, leader", "exited", ...).
	Nodes(ctx context.Context) (map[string]string, error)
	// Where says where the faults go, for logs and reports.
	Where() string
}

// chaosVerbs are the verbs every chaosTarget accepts.
var chaosVerbs = []string{"kill", "restart", "pause", "resume", "partition", "heal"}

func isChaosVerb(v string) bool {
	for _, x := range chaosVerbs {
		if x == v {
			return true
		}
	}
	return false
}

// Errors a chaosTarget wraps, for callers that react to the kind.
var (
	// ErrNoNode: the name designates no node, or the alias no node in a
	// state the verb can act on.
	ErrNoNode = errors.New("no such node")
	// ErrNodeState: the node exists but the verb does not apply to its
	// state (killing a stopped node, resuming one that is not paused).
	ErrNodeState = errors.New("node state does not allow this")
	// ErrUnsupported: the target cannot inject this fault.
	ErrUnsupported = errors.New("not supported by this target")
)

// chaosError is a failed chaos verb: which verb, on which node, and why.
type chaosError struct {
	Verb, Node string
	Err        error
}

func (e *chaosError) Error() string {
	if e.Verb == "" {
		return e.Err.Error()
	}
	return e.Verb + " " + e.Node + ": " + e.Err.Error()
}

func (e *chaosError) Unwrap() error { return e.Err }

// ---------------------------------------------------------------------------
// upTarget: the admin endpoint of `coldstart up`.

// upTarget sends chaos verbs to the loopback admin endpoint of `coldstart
// up` (serveAdmin), which resolves aliases itself and remembers which node
// an alias named for restart, resume and heal.
type upTarget struct {
	addr, token string
	// From is sent with partition: the nodes to cut NODE from (empty:
	// everyone, NATS included).
	From string
	hc   *http.Client
}

// newUpTarget reads the admin token from $COLDSTART_ADMIN_TOKEN or
// DATA/admin-token.
func newUpTarget(addr, dataDir string) (*upTarget, error) {
	token := os.Getenv("COLDSTART_ADMIN_TOKEN")
	if token == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
		if err != nil {
			return nil, fmt.Errorf("no admin token: %w (set --data or $COLDSTART_ADMIN_TOKEN)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return &upTarget{addr: addr, token: token, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (t *upTarget) Where() string { return "coldstart up admin endpoint http://" + t.addr }

func (t *upTarget) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+t.addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusConflict:
		// serveAdmin answers 409 for an unknown node and for a verb the
		// node's state refuses; the text tells which.
		kind := ErrNodeState
		if bytes.Contains(body, []byte("no node")) || bytes.Contains(body, []byte("no running node")) {
			kind = ErrNoNode
		}
		return nil, fmt.Errorf("%w: %s: %s", kind, resp.Status, bytes.TrimSpace(body))
	}
	return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
}

func (t *upTarget) Nodes(ctx context.Context) (map[string]string, error) {
	body, err := t.do(ctx, http.MethodGet, "/coldstart/v1/nodes")
	if err != nil {
		return nil, &chaosError{Err: err}
	}
	var nodes map[string]string
	if err := json.Unmarshal(body, &nodes); err != nil {
		return nil, &chaosError{Err: fmt.Errorf("node list: %w", err)}
	}
	return nodes, nil
}

func (t *upTarget) Apply(ctx context.Context, verb, node string) (string, error) {
	if !isChaosVerb(verb) {
		return "", &chaosError{Verb: verb, Node: node, Err: fmt.Errorf("%w: verb %q (want one of %s)", ErrUnsupported, verb, strings.Join(chaosVerbs, ", "))}
	}
	path := "/coldstart/v1/chaos/" + verb + "/" + url.PathEscape(node)
	if verb == "partition" && t.From != "" {
		path += "?from=" + url.QueryEscape(t.From)
	}
	body, err := t.do(ctx, http.MethodPost, path)
	if err != nil {
		return "", &chaosError{Verb: verb, Node: node, Err: err}
	}
	return strings.TrimSpace(string(body)), nil
}

// Resolve resolves aliases from the node list: `coldstart up` names its
// nodes ROLE-N and marks the leader.
func (t *upTarget) Resolve(ctx context.Context, name string) (string, error) {
	nodes, err := t.Nodes(ctx)
	if err != nil {
		return "", err
	}
	if !roles.IsAlias(name) {
		if _, ok := nodes[name]; !ok {
			return "", &chaosError{Node: name, Err: fmt.Errorf("%w %q", ErrNoNode, name)}
		}
		return name, nil
	}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st := nodes[id]
		if !strings.HasPrefix(st, "running") || strings.Contains(st, "paused") {
			continue
		}
		leader := strings.Contains(st, "leader")
		switch role := strings.SplitN(id, "-", 2)[0]; name {
		case "leader":
			if leader {
				return id, nil
			}
		case "follower":
			if role == "placement" && !leader {
				return id, nil
			}
		default:
			if role == name {
				return id, nil
			}
		}
	}
	return "", &chaosError{Node: name, Err: fmt.Errorf("%w: no running node is %s", ErrNoNode, name)}
}

// ---------------------------------------------------------------------------
// composeTarget: the containers of a docker-compose cluster.

// composeTarget injects faults into the containers of one compose project
// with the docker CLI: kill (SIGKILL: a crash), restart (docker start: the
// node keeps its volume), pause/resume (cgroup freezer: the whole process
// stops, timers included), partition/heal (docker network disconnect and
// connect on every network of the project). It needs no compose CLI, so it
// works the same under docker-compose v1 and Compose v2.
type composeTarget struct {
	project string
	// docker runs the docker CLI (replaced in tests).
	docker func(ctx context.Context, args ...string) ([]byte, error)
	hc     *http.Client
	// leaderWait bounds how long leader and follower wait for the cluster
	// to name a running leader (0: 10 s).
	leaderWait time.Duration

	mu sync.Mutex
	// picked remembers, per "VERB ALIAS", the service an alias named, so
	// that restart leader in the same process restarts that node.
	picked map[string]string
}

// composeNode is one container of the project.
type composeNode struct {
	Service, Container, ContainerID string
	ID, Role                        string // node id (--id=) and role (placement, gateway, worker, nats, redis)
	Status                          string // docker's: running, paused, exited, ...
	Health                          string // healthy, unhealthy, starting, or empty
	Networks                        []string
	GatewayURL                      string // published host URL (gateways)
}

func (n composeNode) running() bool { return n.Status == "running" }

func (n composeNode) describe() string {
	s := n.Status
	if n.Health != "" && n.Status == "running" {
		s += " (" + n.Health + ")"
	}
	if n.ID != "" {
		s += ", id " + n.ID
	}
	return s
}

// newComposeTarget finds the compose project: project if given, else
// $COMPOSE_PROJECT_NAME, else the one project running coldstart placement
// containers (the one started from the current directory if several).
func newComposeTarget(ctx context.Context, project string) (*composeTarget, error) {
	t := &composeTarget{project: project, docker: runDocker, hc: &http.Client{Timeout: 3 * time.Second}}
	if t.project == "" {
		t.project = os.Getenv("COMPOSE_PROJECT_NAME")
	}
	if t.project == "" {
		p, err := t.findProject(ctx)
		if err != nil {
			return nil, err
		}
		t.project = p
	}
	return t, nil
}

// runDocker runs the docker CLI; its error carries the command's output.
func runDocker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func (t *composeTarget) findProject(ctx context.Context) (string, error) {
	out, err := t.docker(ctx, "ps", "-a", "--filter", "label=com.docker.compose.service=placement1",
		"--format", `{{.Label "com.docker.compose.project"}}|{{.Label "com.docker.compose.project.working_dir"}}`)
	if err != nil {
		return "", &chaosError{Err: err}
	}
	wd, _ := os.Getwd()
	seen := map[string]bool{}
	var projects []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, dir, _ := strings.Cut(l, "|")
		if p == "" || seen[p] {
			continue
		}
		if dir != "" && dir == wd {
			return p, nil
		}
		seen[p] = true
		projects = append(projects, p)
	}
	switch len(projects) {
	case 0:
		return "", &chaosError{Err: fmt.Errorf("%w: no docker-compose cluster found (no container of service placement1); start one with scripts/compose-up.sh", ErrNoNode)}
	case 1:
		return projects[0], nil
	}
	sort.Strings(projects)
	return "", &chaosError{Err: fmt.Errorf("several compose projects run coldstart (%s): pick one with --project or $COMPOSE_PROJECT_NAME", strings.Join(projects, ", "))}
}

func (t *composeTarget) Where() string { return "docker-compose project " + t.project }

// dockerInspect is the part of `docker inspect` the target reads.
type dockerInspect struct {
	ID     string `json:"Id"`
	Name   string
	Config struct {
		Cmd    []string
		Labels map[string]string
	}
	State struct {
		Status string
		Health *struct{ Status string }
	}
	NetworkSettings struct {
		Networks map[string]json.RawMessage
		Ports    map[string][]struct{ HostIp, HostPort string }
	}
}

// list inspects every container of the project, sorted by service.
func (t *composeTarget) list(ctx context.Context) ([]composeNode, error) {
	out, err := t.docker(ctx, "ps", "-aq", "--filter", "label=com.docker.compose.project="+t.project)
	if err != nil {
		return nil, &chaosError{Err: err}
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil, &chaosError{Err: fmt.Errorf("%w: compose project %s has no containers", ErrNoNode, t.project)}
	}
	out, err = t.docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, &chaosError{Err: err}
	}
	var raw []dockerInspect
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, &chaosError{Err: fmt.Errorf("docker inspect: %w", err)}
	}
	nodes := make([]composeNode, 0, len(raw))
	for _, r := range raw {
		n := composeNode{
			Service:     r.Config.Labels["com.docker.compose.service"],
			Container:   strings.TrimPrefix(r.Name, "/"),
			ContainerID: r.ID,
			Status:      r.State.Status,
		}
		if r.State.Health != nil {
			n.Health = r.State.Health.Status
		}
		n.Role = n.Service
		if len(r.Config.Cmd) > 0 {
			switch r.Config.Cmd[0] {
			case "placement", "gateway", "worker", "nats":
				n.Role = r.Config.Cmd[0]
			}
		}
		for _, a := range r.Config.Cmd {
			if v, ok := strings.CutPrefix(a, "--id="); ok {
				n.ID = v
			}
		}
		for net := range r.NetworkSettings.Networks {
			n.Networks = append(n.Networks, net)
		}
		sort.Strings(n.Networks)
		if n.Role == "gateway" {
			keys := make([]string, 0, len(r.NetworkSettings.Ports))
			for k := range r.NetworkSettings.Ports {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if b := r.NetworkSettings.Ports[k]; len(b) > 0 && b[0].HostPort != "" {
					host := b[0].HostIp
					if host == "" || host == "0.0.0.0" || host == "::" {
						host = "127.0.0.1"
					}
					n.GatewayURL = "http://" + net.JoinHostPort(host, b[0].HostPort)
					break
				}
			}
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Service < nodes[j].Service })
	return nodes, nil
}

// networks lists the project's networks (compose labels the ones it
// creates), which heal reconnects a node to.
func (t *composeTarget) networks(ctx context.Context) ([]string, error) {
	out, err := t.docker(ctx, "network", "ls", "--filter", "label=com.docker.compose.project="+t.project, "--format", "{{.Name}}")
	if err != nil {
		return nil, &chaosError{Err: err}
	}
	nets := strings.Fields(string(out))
	sort.Strings(nets)
	return nets, nil
}

// leader asks the cluster which placement node leads: the first running
// gateway's status endpoint that names one. Compose cannot tell (every
// placement container looks the same), and a gateway follows the leader
// through placement's own answers.
func (t *composeTarget) leader(ctx context.Context, nodes []composeNode) (string, error) {
	var errs []string
	for _, n := range nodes {
		if n.Role != "gateway" || !n.running() || n.GatewayURL == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.GatewayURL+"/coldstart/v1/status", nil)
		if err != nil {
			return "", err
		}
		resp, err := t.hc.Do(req)
		if err != nil {
			errs = append(errs, n.Service+": "+err.Error())
			continue
		}
		var st struct {
			Leader string `json:"leader"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			errs = append(errs, fmt.Sprintf("%s: status HTTP %d %v", n.Service, resp.StatusCode, err))
			continue
		}
		if st.Leader == "" {
			errs = append(errs, n.Service+": no leader known")
			continue
		}
		for _, p := range nodes {
			if p.Role == "placement" && p.ID == st.Leader {
				return p.Service, nil
			}
		}
		errs = append(errs, fmt.Sprintf("%s: leader %q is no placement container of the project", n.Service, st.Leader))
	}
	if len(errs) == 0 {
		errs = append(errs, "no running gateway with a published port to ask")
	}
	return "", fmt.Errorf("%w: cannot tell the placement leader (%s)", ErrNoNode, strings.Join(errs, "; "))
}

// runningLeader waits (up to leaderWait) until the cluster names a
// leader whose container runs. Right after the leader is killed the
// gateways still name it until the election they learn of, ~1-2 s; a
// cluster without quorum never names another, and the error says so.
func (t *composeTarget) runningLeader(ctx context.Context, nodes *[]composeNode) (string, error) {
	wait := t.leaderWait
	if wait == 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		leader, err := t.leader(ctx, *nodes)
		if err == nil {
			for _, n := range *nodes {
				if n.Service == leader && n.running() {
					return leader, nil
				}
			}
			err = fmt.Errorf("%w: the cluster names %s as leader, which is not running (no quorum, or an election under way)", ErrNoNode, leader)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w (waited %v)", err, wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		list, lerr := t.list(ctx)
		if lerr != nil {
			return "", lerr
		}
		*nodes = list
	}
}

func (t *composeTarget) Nodes(ctx context.Context) (map[string]string, error) {
	nodes, err := t.list(ctx)
	if err != nil {
		return nil, err
	}
	nets, err := t.networks(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(nodes))
	for _, n := range nodes {
		out[n.Service] = n.describe()
		if n.running() && len(n.Networks) < len(nets) {
			out[n.Service] += ", partitioned"
		}
	}
	// The leader, when the cluster can tell; a cluster without quorum has
	// none, which is a state worth listing rather than an error.
	// A gateway may still name a leader that just died: only a running
	// node is marked.
	if l, err := t.leader(ctx, nodes); err == nil && strings.HasPrefix(out[l], "running") {
		out[l] += ", leader"
	}
	return out, nil
}

// match finds the node a plain name designates: service, container name,
// node id or container id prefix.
func match(nodes []composeNode, name string) (composeNode, bool) {
	for _, n := range nodes {
		if n.Service == name || n.Container == name || (n.ID != "" && n.ID == name) {
			return n, true
		}
	}
	if len(name) >= 6 {
		for _, n := range nodes {
			if strings.HasPrefix(n.ContainerID, name) {
				return n, true
			}
		}
	}
	return composeNode{}, false
}

func (t *composeTarget) Resolve(ctx context.Context, name string) (string, error) {
	nodes, err := t.list(ctx)
	if err != nil {
		return "", err
	}
	n, err := t.resolve(ctx, nodes, "kill", name)
	if err != nil {
		return "", &chaosError{Node: name, Err: err}
	}
	return n.Service, nil
}

// resolve picks the node name designates for verb. An alias given to a
// verb that starts a fault (kill, pause, partition) picks a running node
// without a fault; given to the verb that undoes it, a node that has the
// fault, preferring the one this target picked for the same alias.
func (t *composeTarget) resolve(ctx context.Context, nodes []composeNode, verb, name string) (composeNode, error) {
	if !roles.IsAlias(name) {
		n, ok := match(nodes, name)
		if !ok {
			var names []string
			for _, n := range nodes {
				names = append(names, n.Service)
			}
			return n, fmt.Errorf("%w %q in compose project %s (want a service, container or node id: %s; or one of %s)", ErrNoNode, name, t.project, strings.Join(names, ", "), strings.Join(roles.Aliases, ", "))
		}
		return n, nil
	}
	role := name
	if name == "leader" || name == "follower" {
		role = "placement"
	}
	var want func(composeNode) bool
	var fault string
	switch verb {
	case "restart":
		want, fault = func(n composeNode) bool { return n.Status == "exited" || n.Status == "created" || n.Status == "dead" }, "kill"
	case "resume":
		want, fault = func(n composeNode) bool { return n.Status == "paused" }, "pause"
	case "heal":
		nets, err := t.networks(ctx)
		if err != nil {
			return composeNode{}, err
		}
		want, fault = func(n composeNode) bool { return n.Status != "exited" && len(n.Networks) < len(nets) }, "partition"
	}
	if want != nil {
		t.mu.Lock()
		prev := t.picked[fault+" "+name]
		t.mu.Unlock()
		var first *composeNode
		for i, n := range nodes {
			if n.Role == role && want(n) {
				if n.Service == prev {
					return n, nil
				}
				if first == nil {
					first = &nodes[i]
				}
			}
		}
		if first == nil {
			return composeNode{}, fmt.Errorf("%w: no %s node to %s (none of role %s has had %s)", ErrNoNode, name, verb, role, fault)
		}
		return *first, nil
	}
	var pick composeNode
	found := false
	switch name {
	case "leader", "follower":
		leader, err := t.runningLeader(ctx, &nodes)
		if err != nil {
			return composeNode{}, err
		}
		for _, n := range nodes {
			if n.Role == "placement" && n.running() && (n.Service == leader) == (name == "leader") {
				pick, found = n, true
				break
			}
		}
	default:
		for _, n := range nodes {
			if n.Role == role && n.running() {
				pick, found = n, true
				break
			}
		}
	}
	if !found {
		return composeNode{}, fmt.Errorf("%w: no running node is %s", ErrNoNode, name)
	}
	t.mu.Lock()
	if t.picked == nil {
		t.picked = map[string]string{}
	}
	t.picked[verb+" "+name] = pick.Service
	t.mu.Unlock()
	return pick, nil
}

func (t *composeTarget) Apply(ctx context.Context, verb, node string) (string, error) {
	fail := func(err error) (string, error) { return "", &chaosError{Verb: verb, Node: node, Err: err} }
	if !isChaosVerb(verb) {
		return fail(fmt.Errorf("%w: verb %q (want one of %s)", ErrUnsupported, verb, strings.Join(chaosVerbs, ", ")))
	}
	nodes, err := t.list(ctx)
	if err != nil {
		return "", err
	}
	n, err := t.resolve(ctx, nodes, verb, node)
	if err != nil {
		return fail(err)
	}
	state := func(want string) error {
		if n.Status != want {
			return fmt.Errorf("%w: %s is %s, not %s", ErrNodeState, n.Service, n.Status, want)
		}
		return nil
	}
	switch verb {
	case "kill":
		if err = state("running"); err == nil {
			_, err = t.docker(ctx, "kill", n.ContainerID)
		}
	case "restart":
		if n.Status == "running" || n.Status == "paused" {
			err = fmt.Errorf("%w: %s is already %s", ErrNodeState, n.Service, n.Status)
		} else {
			_, err = t.docker(ctx, "start", n.ContainerID)
		}
	case "pause":
		if err = state("running"); err == nil {
			_, err = t.docker(ctx, "pause", n.ContainerID)
		}
	case "resume":
		if err = state("paused"); err == nil {
			_, err = t.docker(ctx, "unpause", n.ContainerID)
		}
	case "partition":
		if err = state("running"); err == nil && len(n.Networks) == 0 {
			err = fmt.Errorf("%w: %s is already cut off from every network", ErrNodeState, n.Service)
		}
		for _, net := range n.Networks {
			if err != nil {
				break
			}
			_, err = t.docker(ctx, "network", "disconnect", net, n.ContainerID)
		}
	case "heal":
		err = t.heal(ctx, n)
	}
	if err != nil {
		return fail(err)
	}
	label := n.Service
	if n.Service != node {
		label += " (" + node + ")"
	}
	return verb + " " + label, nil
}

// NodeID is the node id (--id) of the container or service name names,
// as coldstart status shows it; name itself when it names none.
func (t *composeTarget) NodeID(ctx context.Context, name string) string {
	nodes, err := t.list(ctx)
	if err != nil {
		return name
	}
	if n, ok := match(nodes, name); ok && n.ID != "" {
		return n.ID
	}
	return name
}

// heal reconnects the node to every project network it lacks, under its
// service name: compose's DNS alias, which Raft peers, NATS URLs and
// memberlist seeds use.
func (t *composeTarget) heal(ctx context.Context, n composeNode) error {
	nets, err := t.networks(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, x := range n.Networks {
		have[x] = true
	}
	healed := false
	for _, net := range nets {
		if have[net] {
			continue
		}
		if _, err := t.docker(ctx, "network", "connect", "--alias", n.Service, net, n.ContainerID); err != nil {
			return err
		}
		healed = true
	}
	if !healed {
		return fmt.Errorf("%w: %s is not partitioned", ErrNodeState, n.Service)
	}
	return nil
}

// newChaosTarget builds the target `--target` names.
func newChaosTarget(ctx context.Context, target, admin, data, project, from string) (chaosTarget, error) {
	switch target {
	case "up":
		t, err := newUpTarget(admin, data)
		if err != nil {
			return nil, err
		}
		t.From = from
		return t, nil
	case "compose":
		if from != "" {
			return nil, fmt.Errorf("--from: %w: compose partitions cut a node off every network (docker network disconnect)", ErrUnsupported)
		}
		return newComposeTarget(ctx, project)
	}
	return nil, fmt.Errorf("--target %q: want up or compose", target)
}
