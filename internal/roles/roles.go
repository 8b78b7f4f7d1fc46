// Package roles assembles a node of each role from its parts (NATS
// connection, membership, the role's component). `coldstart up`, the
// per-role commands and internal/testcluster all start nodes through it, so
// the embedded cluster runs the same code paths as separate processes.
package roles

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/codestore"
	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/logstream"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/internal/secret"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/worker"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// Common is what every node needs.
type Common struct {
	ID         string
	NATSURL    string
	GossipAddr string   // memberlist bind host:port
	Advertise  string   // memberlist advertise host[:port] (empty: derived)
	Seeds      []string // memberlist seeds
	Timing     membership.Timing
	Registry   *prometheus.Registry
	Logger     *slog.Logger
	// Secret is the cluster secret (internal/secret): the node derives its
	// NATS password, the gossip key and the grant key from it. Nil: the
	// node uses NATSPassword and GossipKey, or none (an open cluster).
	Secret []byte
	// NATSPassword and GossipKey, for a node given its own keys instead
	// of the cluster secret (ignored when Secret is set).
	NATSPassword string
	GossipKey    []byte
	// Fault, when set, carries every socket of the node (NATS, gossip,
	// Raft) through a fault layer that tests and chaos pause and
	// partition.
	Fault *faultnet.Layer
}

// natsOptions are the node's NATS credentials as user "<role>.<id>".
func (c Common) natsOptions(role string) (natsutil.ConnectOptions, error) {
	pw := c.NATSPassword
	if c.Secret != nil {
		pw = natsutil.Password(c.Secret, natsutil.UserName(role, c.ID))
	}
	if pw == "" {
		return natsutil.ConnectOptions{Logger: c.Logger}, nil
	}
	if err := natsutil.ValidID(c.ID); err != nil {
		return natsutil.ConnectOptions{}, err
	}
	o := natsutil.NodeConnectOptions(role, c.ID, pw)
	o.Logger = c.Logger
	return o, nil
}

// gossipKey is the memberlist encryption key (nil: plaintext gossip).
func (c Common) gossipKey() []byte {
	if c.Secret != nil {
		return secret.DeriveKey(c.Secret, secret.PurposeMemberlist)
	}
	return c.GossipKey
}

// GrantKey is the key placement signs sandbox grants with and workers
// verify them with: HMAC(secret, "grant"). Nil without a cluster secret.
func (c Common) GrantKey() []byte {
	if c.Secret == nil {
		return nil
	}
	return secret.DeriveKey(c.Secret, secret.PurposeGrant)
}

// Node is a started node of any role.
type Node struct {
	ID      string
	Role    string
	NC      *nats.Conn
	Members *membership.List

	Placement *placement.Node
	Worker    *worker.Node
	Gateway   *gateway.Gateway

	obs     *observerMux
	logs    *logstream.Publisher // a worker's function logs
	closers []func()             // clients the node owns (a worker's Redis)
	once    sync.Once
}

func connect(c Common, role string) (*nats.Conn, error) {
	o, err := c.natsOptions(role)
	if err != nil {
		return nil, err
	}
	o.Extra = append(o.Extra, c.faultNATS()...)
	return natsutil.Connect(c.NATSURL, role+"-"+c.ID, o)
}

// PlacementOptions configures a placement node.
type PlacementOptions struct {
	Common
	RaftAddr     string
	DataDir      string
	Peers        []placement.Peer
	Raft         placement.Timing
	Rate         quota.Rate
	DefaultLimit int
	Grace        time.Duration
}

// StartPlacement starts a placement node.
func StartPlacement(o PlacementOptions) (*Node, error) {
	nc, err := connect(o.Common, membership.RolePlacement)
	if err != nil {
		return nil, err
	}
	n := &Node{ID: o.ID, Role: membership.RolePlacement, NC: nc, obs: &observerMux{}}
	ml, err := join(o.Common, membership.Config{Meta: membership.Meta{ID: o.ID, Role: membership.RolePlacement, Addr: o.RaftAddr}, BindAddr: o.GossipAddr, Advertise: o.Advertise, Seeds: o.Seeds, Timing: o.Timing, Observer: n.obs, SecretKey: o.gossipKey()})
	if err != nil {
		nc.Close()
		return nil, err
	}
	n.Members = ml
	layer, err := o.raftLayer()
	if err != nil {
		ml.Kill()
		nc.Close()
		return nil, err
	}
	pn, err := placement.Start(placement.Config{StreamLayer: layer, ID: o.ID, RaftAddr: o.RaftAddr, DataDir: o.DataDir, Peers: o.Peers, Timing: o.Raft, NATS: nc, Rate: o.Rate, DefaultLimit: o.DefaultLimit, Grace: o.Grace, GrantKey: o.GrantKey(), Members: ml, Registry: registerer(o.Registry), Logger: o.Logger})
	if err != nil {
		if layer != nil {
			layer.Close() // placement closes it only once its transport exists
		}
		ml.Kill()
		nc.Close()
		return nil, err
	}
	n.Placement = pn
	n.obs.set(pn)
	return n, nil
}

// WorkerOptions configures a worker.
type WorkerOptions struct {
	Common
	Capacity       int
	MemoryMB       int
	KeepAlive      time.Duration
	Reuse          pool.Reuse
	ReconcileEvery time.Duration
	TimeScale      float64
	LogInvocations bool
	// CodeCacheDir is where code bundles are unpacked (default
	// $TMPDIR/coldstart-code-<id>); CodeCacheBytes bounds it beyond the
	// bundles in use (default DefaultCodeCacheBytes).
	CodeCacheDir   string
	CodeCacheBytes int64
	// ScratchDir and BootDelay are worker.Config's.
	ScratchDir string
	BootDelay  time.Duration
	// RedisURL is the Redis of the platform's idempotency records
	// (redis://host:port); empty: functions with idempotency on are
	// refused (fail closed).
	RedisURL string
}

// StartWorker starts a worker.
func StartWorker(o WorkerOptions) (*Node, error) {
	nc, err := connect(o.Common, membership.RoleWorker)
	if err != nil {
		return nil, err
	}
	n := &Node{ID: o.ID, Role: membership.RoleWorker, NC: nc}
	reg := registerer(o.Registry)
	dir, err := codeCacheDir(o.CodeCacheDir, o.ID)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if o.CodeCacheBytes == 0 {
		o.CodeCacheBytes = DefaultCodeCacheBytes
	}
	code := codestore.NewCache(dir, &lazyReader{nc: nc}, o.CodeCacheBytes)
	var rc redis.UniversalClient
	if o.RedisURL != "" {
		opt, err := redis.ParseURL(o.RedisURL)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("--redis %s: %w", o.RedisURL, err)
		}
		// Short timeouts: a Redis that does not answer fails the
		// invocation closed rather than hold its sandbox.
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 500*time.Millisecond, time.Second, time.Second
		rc = redis.NewClient(opt)
		n.closers = append(n.closers, func() { rc.Close() })
	}
	n.logs = logstream.NewPublisher(nc)
	wn, err := worker.Start(worker.Config{ID: o.ID, NATS: nc, Placement: placement.NewClient(nc, time.Second), Capacity: o.Capacity, MemoryMB: o.MemoryMB, KeepAlive: o.KeepAlive, Reuse: o.Reuse, ReconcileEvery: o.ReconcileEvery, TimeScale: o.TimeScale, Registry: reg, Logger: o.Logger, LogInvocations: o.LogInvocations, GrantKey: o.GrantKey(),
		Code: code, ScratchDir: o.ScratchDir, BootDelay: o.BootDelay, Logs: publishLog(n.logs), Redis: rc})
	if err != nil {
		n.logs.Close()
		nc.Close()
		return nil, err
	}
	n.Worker = wn
	// Join membership last: placement registers the worker as soon as it
	// sees it, and it must already answer on its subjects.
	ml, err := join(o.Common, membership.Config{Meta: membership.Meta{ID: o.ID, Role: membership.RoleWorker, Capacity: o.Capacity, MemoryMB: o.MemoryMB}, BindAddr: o.GossipAddr, Advertise: o.Advertise, Seeds: o.Seeds, Timing: o.Timing, SecretKey: o.gossipKey()})
	if err != nil {
		wn.Stop()
		nc.Close()
		return nil, err
	}
	n.Members = ml
	return n, nil
}

// GatewayOptions configures a gateway.
type GatewayOptions struct {
	Common
	Listen   string
	Gatherer prometheus.Gatherer
	// CodeReplicas is the code bucket's copies when this gateway is the
	// one creating it (default 1: a single NATS server).
	CodeReplicas int
	// Logs is the logs stream's retention (zero: logstream's defaults).
	Logs logstream.Config
	// Records is the records stream's retention (zero: recordstream's
	// defaults).
	Records recordstream.Config
	// StrictAuth and NoDefaultKey are gateway.Config's.
	StrictAuth   bool
	NoDefaultKey bool
	// TimeScale divides the platform's delays of asynchronous invocations
	// (gateway.Config.TimeScale).
	TimeScale float64
}

// StartGateway starts a gateway.
func StartGateway(o GatewayOptions) (*Node, error) {
	nc, err := connect(o.Common, membership.RoleGateway)
	if err != nil {
		return nil, err
	}
	n := &Node{ID: o.ID, Role: membership.RoleGateway, NC: nc}
	// The bucket and the stream exist before the gateway is seen in
	// membership: a function created through it must find somewhere to
	// put its code.
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	code, err := openCodeStore(nc, o.CodeReplicas, log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ensureLogs(nc, o.Logs, log)
	ensureRecords(nc, o.Records, log)
	ml, err := join(o.Common, membership.Config{Meta: membership.Meta{ID: o.ID, Role: membership.RoleGateway, Addr: o.Listen}, BindAddr: o.GossipAddr, Advertise: o.Advertise, Seeds: o.Seeds, Timing: o.Timing, SecretKey: o.gossipKey()})
	if err != nil {
		nc.Close()
		return nil, err
	}
	n.Members = ml
	gw, err := gateway.Start(gateway.Config{ID: o.ID, Listen: o.Listen, NATS: nc, Placement: placement.NewClient(nc, 900*time.Millisecond), Members: memberView{ml}, Registry: o.Registry, Gatherer: o.Gatherer, Logger: o.Logger, Code: code, StrictAuth: o.StrictAuth, NoDefaultKey: o.NoDefaultKey, TimeScale: o.TimeScale})
	if err != nil {
		ml.Kill()
		nc.Close()
		return nil, err
	}
	n.Gateway = gw
	return n, nil
}

// Stop shuts the node down gracefully (it leaves membership).
func (n *Node) Stop() { n.stop(true) }

// Kill stops the node as a crash would: no goodbye to membership, its NATS
// connection dropped, its in-flight work abandoned.
func (n *Node) Kill() { n.stop(false) }

func (n *Node) stop(graceful bool) {
	n.once.Do(func() {
		if n.Members != nil {
			if graceful {
				n.Members.Leave()
			} else {
				n.Members.Kill()
			}
		}
		if n.Gateway != nil {
			n.Gateway.Stop()
		}
		if !graceful {
			n.NC.Close() // subscriptions vanish at once, as in a crash
		}
		if n.Worker != nil {
			n.Worker.Stop()
		}
		for _, c := range n.closers {
			c()
		}
		if n.logs != nil {
			n.logs.Close() // the sandboxes' last lines, before the connection goes
		}
		if n.Placement != nil {
			n.Placement.Shutdown()
		}
		if graceful {
			n.NC.Drain()
		}
	})
}

// observerMux forwards membership events to placement once it exists
// (membership starts first so that placement can read members at start).
type observerMux struct {
	mu sync.Mutex
	o  membership.Observer
}

func (m *observerMux) set(o membership.Observer) { m.mu.Lock(); m.o = o; m.mu.Unlock() }
func (m *observerMux) get() membership.Observer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.o
}
func (m *observerMux) MemberJoin(x membership.Member) {
	if o := m.get(); o != nil {
		o.MemberJoin(x)
	}
}
func (m *observerMux) MemberLeave(x membership.Member) {
	if o := m.get(); o != nil {
		o.MemberLeave(x)
	}
}

// memberView renders membership for the gateway's status page.
type memberView struct{ l *membership.List }

func (v memberView) Nodes() []api.Node {
	var out []api.Node
	seen := map[string]bool{}
	for _, m := range v.l.Members() {
		seen[m.ID] = true
		out = append(out, api.Node{ID: m.ID, Role: m.Role, Addr: m.Gossip, State: "alive", Detail: detail(m)})
	}
	for _, m := range v.l.Dead() {
		if !seen[m.ID] {
			out = append(out, api.Node{ID: m.ID, Role: m.Role, Addr: m.Gossip, State: "dead"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func detail(m membership.Member) string {
	switch m.Role {
	case membership.RoleWorker:
		return fmt.Sprintf("capacity %d sandboxes", m.Capacity)
	case membership.RolePlacement:
		return "raft " + m.Addr
	case membership.RoleGateway:
		return "http " + m.Addr
	}
	return ""
}

// registerer avoids a typed-nil interface when no registry is given.
func registerer(r *prometheus.Registry) prometheus.Registerer {
	if r == nil {
		return nil
	}
	return r
}
