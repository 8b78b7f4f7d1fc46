// Package testcluster runs a whole coldstart cluster in one test process:
// an embedded NATS server, N placement nodes (Raft over loopback TCP, boltdb
// on t.TempDir), gateways and workers, each with its own NATS connection and
// memberlist member on random loopback ports, with tightened timings. Drills
// are ordinary Go tests on top of it.
package testcluster

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/ports"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/internal/roles"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// Options sizes and tunes a cluster.
type Options struct {
	Placement, Gateways, Workers int
	Rate                         quota.Rate // default: unlimited scaling rate
	DefaultLimit                 int
	WorkerCapacity               int
	KeepAlive                    time.Duration
	Reuse                        pool.Reuse
	TimeScale                    float64
	// RedisURL is the workers' Redis for the platform's idempotency
	// (StartRedis starts a real redis-server).
	RedisURL       string
	ReconcileEvery time.Duration
	Grace          time.Duration
	// Raft and Member override RaftTiming and MemberTiming (zero: those).
	Raft   placement.Timing
	Member membership.Timing
	// Verbose sends node logs to stderr.
	Verbose bool
	// StrictAuth and NoDefaultKey are the gateways' (gateway.Config).
	StrictAuth, NoDefaultKey bool
	// BootDelay is the workers' emulated microVM boot (worker.Config).
	BootDelay time.Duration
}

// RaftTiming and MemberTiming are the tightened timings tests use (Nomad's
// TestServer habit): elections and dead-node detection in a few hundred ms.
// Raft's are not tighter still because -race on 2 busy cores starves
// heartbeats and makes leadership flap.
var (
	RaftTiming   = placement.Timing{Heartbeat: 250 * time.Millisecond, Election: 250 * time.Millisecond, Lease: 125 * time.Millisecond, Commit: 5 * time.Millisecond}
	MemberTiming = membership.Timing{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, GossipInterval: 50 * time.Millisecond, SuspicionMult: 2}
)

type spec struct {
	role string
	p    roles.PlacementOptions
	w    roles.WorkerOptions
	g    roles.GatewayOptions
}

// Cluster is a running in-process cluster.
type Cluster struct {
	t     testing.TB
	NATS  *server.Server
	URL   string
	opts  Options
	mu    sync.Mutex
	nodes map[string]*roles.Node
	specs map[string]spec
	order []string
	seeds []string

	// Secret is the cluster's secret: its NATS server admits only nodes
	// and clients whose credentials derive from it (see Client).
	Secret []byte
	// Fault carries every node's sockets; Pause, Partition and friends
	// flip it.
	Fault *faultnet.Layer
}

// New starts a cluster and waits until placement has a leader and every
// worker is registered. It is stopped by t.Cleanup.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Placement == 0 {
		o.Placement = 3
	}
	if o.Rate == (quota.Rate{}) {
		o.Rate = quota.Rate{Burst: 0} // unlimited unless a test sets it
	}
	if o.Raft == (placement.Timing{}) {
		o.Raft = RaftTiming
	}
	if o.Member == (membership.Timing{}) {
		o.Member = MemberTiming
	}
	if o.ReconcileEvery == 0 {
		o.ReconcileEvery = 500 * time.Millisecond
	}
	if o.Grace == 0 {
		o.Grace = 2 * time.Second
	}
	sec, err := secret.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// Both directories go after the cluster has stopped: their cleanups
	// are registered before c.Stop, and cleanups run last-in first-out.
	dir := stateDir(t)
	ns, err := natsutil.StartServer(natsutil.ServerConfig{Secret: sec, JetStream: true, StoreDir: stateDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, NATS: ns, URL: natsutil.URL(ns), Secret: sec, Fault: faultnet.New(), opts: o, nodes: map[string]*roles.Node{}, specs: map[string]spec{}}
	t.Cleanup(c.Stop)
	var peers []placement.Peer
	for i := 1; i <= o.Placement; i++ {
		id := fmt.Sprintf("placement-%d", i)
		raftAddr := freeAddr(t)
		gossip := freeAddr(t)
		peers = append(peers, placement.Peer{ID: id, Addr: raftAddr})
		c.seeds = append(c.seeds, gossip)
		c.specs[id] = spec{role: membership.RolePlacement, p: roles.PlacementOptions{Common: c.common(id, gossip), RaftAddr: raftAddr, DataDir: dir, Raft: o.Raft, Rate: o.Rate, DefaultLimit: o.DefaultLimit, Grace: o.Grace}}
		c.order = append(c.order, id)
	}
	for _, id := range c.order {
		s := c.specs[id]
		s.p.Peers = peers
		s.p.Seeds = c.seeds
		c.specs[id] = s
	}
	for i := 1; i <= o.Workers; i++ {
		id := fmt.Sprintf("worker-%d", i)
		c.specs[id] = spec{role: membership.RoleWorker, w: roles.WorkerOptions{Common: c.common(id, freeAddr(t)), Capacity: o.WorkerCapacity, KeepAlive: o.KeepAlive, Reuse: o.Reuse, ReconcileEvery: o.ReconcileEvery, TimeScale: o.TimeScale, RedisURL: o.RedisURL,
			CodeCacheDir: sandboxDir(t, "coldstart-code-"+id), ScratchDir: sandboxDir(t, "coldstart-scratch-"+id), BootDelay: o.BootDelay}}
		c.order = append(c.order, id)
	}
	for i := 1; i <= o.Gateways; i++ {
		id := fmt.Sprintf("gateway-%d", i)
		c.specs[id] = spec{role: membership.RoleGateway, g: roles.GatewayOptions{Common: c.common(id, freeAddr(t)), Listen: "127.0.0.1:0", StrictAuth: o.StrictAuth, NoDefaultKey: o.NoDefaultKey, TimeScale: o.TimeScale}}
		c.order = append(c.order, id)
	}
	// Placement nodes start in parallel: each waits for the others' Raft.
	var wg sync.WaitGroup
	errs := make(chan error, o.Placement)
	for _, id := range c.order[:o.Placement] {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if err := c.start(id); err != nil {
				errs <- err
			}
		}(id)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range c.order[o.Placement:] {
		if err := c.start(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitFor(func() bool { return c.Leader() != nil && c.registeredWorkers() == o.Workers }, 15*time.Second); err != nil {
		t.Fatalf("cluster did not come up: %v (leader %v, workers registered %d of %d)", err, c.Leader() != nil, c.registeredWorkers(), o.Workers)
	}
	return c
}

func (c *Cluster) common(id, gossip string) roles.Common {
	cm := roles.Common{ID: id, NATSURL: c.URL, GossipAddr: gossip, Seeds: c.seeds, Timing: c.opts.Member, Secret: c.Secret, Fault: c.Fault}
	if c.opts.Verbose {
		cm.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cm
}

func (c *Cluster) start(id string) error {
	s := c.specs[id]
	var n *roles.Node
	var err error
	switch s.role {
	case membership.RolePlacement:
		n, err = roles.StartPlacement(s.p)
	case membership.RoleWorker:
		s.w.Seeds = c.seeds
		n, err = roles.StartWorker(s.w)
	case membership.RoleGateway:
		s.g.Seeds = c.seeds
		n, err = roles.StartGateway(s.g)
		if err == nil {
			// Keep the port across restarts so clients can reconnect.
			s.g.Listen = n.Gateway.Addr()
			c.specs[id] = s
		}
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return nil
}

func freeAddr(t testing.TB) string {
	p, err := ports.Free("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0]))
}

// Node returns a running node by id (nil when killed).
func (c *Cluster) Node(id string) *roles.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// IDs returns the ids of a role's nodes, running or not.
func (c *Cluster) IDs(role string) []string {
	var out []string
	for _, id := range c.order {
		if c.specs[id].role == role {
			out = append(out, id)
		}
	}
	return out
}

// Leader returns the placement leader, or nil.
func (c *Cluster) Leader() *roles.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.Placement != nil && n.Placement.IsLeader() {
			return n
		}
	}
	return nil
}

func (c *Cluster) registeredWorkers() int {
	l := c.Leader()
	if l == nil {
		return 0
	}
	return l.Placement.LeasedWorkers()
}

// GatewayURL returns the base URL of the i-th gateway (0-based).
func (c *Cluster) GatewayURL(i int) string {
	ids := c.IDs(membership.RoleGateway)
	return "http://" + c.specs[ids[i]].g.Listen
}

// Kill crashes a node: no membership goodbye, NATS connection dropped.
func (c *Cluster) Kill(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Kill()
	}
}

// Restart starts a killed node again with the same id, addresses and data.
func (c *Cluster) Restart(id string) {
	c.t.Helper()
	if err := c.start(id); err != nil {
		c.t.Fatal(err)
	}
}

// WaitFor polls cond until it holds or timeout passes.
func (c *Cluster) WaitFor(cond func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops every node and the NATS server.
func (c *Cluster) Stop() {
	c.Fault.Reset() // a paused node would stall its own shutdown
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*roles.Node{}
	c.mu.Unlock()
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func(n *roles.Node) { defer wg.Done(); n.Kill() }(nodes[id])
	}
	wg.Wait()
	c.NATS.Shutdown()
}

// Recorder collects every invocation record the workers publish.
type Recorder struct {
	mu        sync.Mutex
	recs      []api.Record
	throttles []api.Record
	abandoned []api.Record // grants nothing ran in (api.OutcomeAbandoned)
	sub       *nats.Subscription
	nc        *nats.Conn
	seen      recordstream.Seen
}

// Client connects to the cluster's NATS server as node id of role
// (natsutil.RoleTool, or a node role for a test that acts as one), with
// that role's permissions. It is closed by t.Cleanup.
func (c *Cluster) Client(role, id string) *nats.Conn {
	c.t.Helper()
	nc, err := natsutil.Connect(c.URL, role+"-"+id, natsutil.NodeConnectOptions(role, id, natsutil.Password(c.Secret, natsutil.UserName(role, id))))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// Records starts collecting records.
func (c *Cluster) Records() *Recorder {
	nc := c.Client(natsutil.RoleTool, "recorder")
	var err error
	r := &Recorder{nc: nc}
	r.sub, err = nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		if !r.seen.First(m) {
			return // a batch published again while its acknowledgement was late
		}
		recs := wire.SplitRecords(m.Data)
		r.mu.Lock()
		for _, rec := range recs {
			// Throttles and abandoned grants are kept apart: All and
			// Len count invocations.
			switch rec.Outcome {
			case api.OutcomeThrottled:
				r.throttles = append(r.throttles, rec)
			case api.OutcomeAbandoned:
				r.abandoned = append(r.abandoned, rec)
			default:
				r.recs = append(r.recs, rec)
			}
		}
		r.mu.Unlock()
	})
	if err != nil {
		c.t.Fatal(err)
	}
	r.sub.SetPendingLimits(-1, -1)
	nc.Flush()
	return r
}

// Throttles returns the throttled records (429s the gateways answered).
func (r *Recorder) Throttles() []api.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Record(nil), r.throttles...)
}

// Everything returns every record so far: invocations, throttles and
// abandoned grants.
func (r *Recorder) Everything() []api.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(append(append([]api.Record(nil), r.recs...), r.throttles...), r.abandoned...)
}

// All returns a copy of the records so far.
func (r *Recorder) All() []api.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Record(nil), r.recs...)
}

// Len is the number of records so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// MaxInFlight is the sweep-line maximum of capacity held at once among
// records that match keep (see check.MaxInFlight).
func MaxInFlight(recs []api.Record, keep func(api.Record) bool) int {
	return check.MaxInFlight(recs, keep)
}

// HeldUntil is when a record's sandbox was given back to its pool.
func HeldUntil(r api.Record) int64 { return check.HeldUntil(r) }

// HeldFrom is when a record's sandbox started being held for it: the grant
// of a cold start, or the worker's receipt of a warm request.
func HeldFrom(r api.Record) int64 { return check.HeldFrom(r) }

// stateDir holds what the cluster keeps on disk (Raft logs and snapshots,
// JetStream), in memory (/dev/shm) when the machine has it, as the process
// drill does: the disks these drills run on have stalled fdatasync for
// seconds, which stalls Raft commits and elections (a slow-disk fault no
// drill here means to inject), and drills run right after a package of
// drills have failed with lost leases and timed-out pre-warms, likely
// from that. CS_DRILL_DISK=1 keeps it on disk.
func stateDir(t testing.TB) string {
	if os.Getenv("CS_DRILL_DISK") == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			if d, err := os.MkdirTemp("/dev/shm", "coldstart-test-"); err == nil {
				t.Cleanup(func() { os.RemoveAll(d) })
				return d
			}
		}
	}
	return t.TempDir()
}

// sandboxDir is a worker's directory that sandboxes read (code) or write
// (scratch), removed with the test. Not t.TempDir: sandboxes run as other
// uids and need o+x on every parent, which t.TempDir's 0700 parent denies;
// and not the worker's default, which two test processes would share.
func sandboxDir(t testing.TB, prefix string) string {
	dir, err := os.MkdirTemp("", prefix+"-")
	if err == nil {
		err = os.Chmod(dir, 0o755) // MkdirTemp makes it 0700
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeReadOnly(dir) })
	return dir
}

// removeReadOnly removes a tree the code cache made read-only (0555
// directories refuse the removal of their entries).
func removeReadOnly(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}
