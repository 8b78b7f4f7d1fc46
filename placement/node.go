package placement

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// Peer is one member of the fixed placement cluster.
type Peer struct {
	ID   string
	Addr string // Raft host:port
}

// Timing is the Raft timing.
type Timing struct {
	Heartbeat, Election, Lease, Commit time.Duration
}

// Tuned fails over in about half a second on loopback (0.43 s was measured
// with 200 ms timeouts; hashicorp/raft's defaults take ~2 s). 300 ms leaves
// room for a loaded 2-core machine, where 200 ms made leadership flap.
var Tuned = Timing{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, Lease: 150 * time.Millisecond, Commit: 20 * time.Millisecond}

// Config configures a placement node.
type Config struct {
	ID       string
	RaftAddr string // bind and advertise address for Raft
	DataDir  string
	Peers    []Peer // all placement nodes, this one included
	Timing   Timing
	NATS     *nats.Conn
	Rate     quota.Rate // scaling rate; the zero Rate disables it
	// DefaultLimit is the concurrency limit of accounts never set.
	DefaultLimit int
	// Grace is how long a granted sandbox may be absent from its worker's
	// report before reconcile releases it (covers the grant-to-create gap).
	Grace time.Duration
	// ApplyTimeout bounds a Raft apply; past it the request fails with
	// ServiceException rather than hang.
	ApplyTimeout time.Duration
	// Lease is the worker lease timing (DefaultLease when zero).
	Lease LeaseTiming
	// GrantKey signs grants (HMAC-SHA256) so that a worker starts a cold
	// sandbox only for a grant placement made; nil leaves grants unsigned.
	GrantKey []byte
	// Workers reaches the workers (reclaim, trim, probes); nil: over NATS.
	Workers WorkerAPI
	// MaxInFlight bounds the leader requests served at once; past it the
	// answer is a retryable ServiceException (DefaultMaxInFlight when 0).
	MaxInFlight int
	// StreamLayer, when set, carries Raft instead of plain TCP on RaftAddr
	// (internal/faultnet injects network faults through it).
	StreamLayer raft.StreamLayer
	// Members, when set, gives placement a fast hint of workers leaving.
	Members  MemberSource
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// MemberSource is the membership view placement needs.
type MemberSource interface {
	Members() []membership.Member
}

// Node is one placement server.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *FSM
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
	nc    *nats.Conn

	workers WorkerAPI
	prov    provisioner
	leases  *leaseTable
	sem     chan struct{} // bounds leader requests in flight

	mu             sync.Mutex
	inflightGrants map[string]*grantCall // create_sandbox requests being decided, by id
	leaderSubs     []*nats.Subscription
	// verified is false after this node was not running: renewals are
	// answered again only once VerifyLeader succeeds.
	verified      atomic.Bool
	lastTick      atomic.Int64 // the watch loop's last tick, Unix ns
	natsEpoch     uint64       // NATS reconnects when the lease table started
	natsDownSince time.Time    // leader's NATS connection down since
	natsAnswered  time.Time    // when the slow probe of a down episode got its answer
	leading       bool
	readSub       *nats.Subscription
	nodeReadSub   *nats.Subscription
	notify        chan bool
	done          chan struct{}
	wg            sync.WaitGroup
}

// Start opens (or creates) the node's data directory, starts Raft and the
// NATS handlers. Bootstrap is idempotent: a data directory with Raft state
// rejoins the cluster it knows and is never bootstrapped again.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Timing.Heartbeat == 0 {
		cfg.Timing = Tuned
	}
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 700 * time.Millisecond
	}
	if cfg.Lease.TTL == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	dir := filepath.Join(cfg.DataDir, cfg.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("placement data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID, "role", "placement"), nc: cfg.NATS, done: make(chan struct{}), notify: make(chan bool, 16),
		leases: newLeaseTable(), sem: make(chan struct{}, cfg.MaxInFlight), workers: cfg.Workers}
	if n.workers == nil {
		n.workers = natsWorkers{nc: cfg.NATS, late: func(id string) { n.releaseEventually([]string{id}) }}
	}
	n.fsm = NewFSM(cfg.Rate, cfg.DefaultLimit)

	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("placement log store: %w", err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("placement snapshots: %w", err)
	}
	if err := checkSnapshots(snaps, dir, n.log); err != nil {
		store.Close()
		return nil, err
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("placement raft addr: %w", err)
	}
	var trans *raft.NetworkTransport
	if cfg.StreamLayer != nil {
		trans = raft.NewNetworkTransport(cfg.StreamLayer, 4, 2*time.Second, io.Discard)
	} else {
		trans, err = raft.NewTCPTransport(cfg.RaftAddr, addr, 4, 2*time.Second, io.Discard)
	}
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("placement raft transport: %w", err)
	}
	n.trans = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.Timing.Heartbeat
	rc.ElectionTimeout = cfg.Timing.Election
	rc.LeaderLeaseTimeout = cfg.Timing.Lease
	rc.CommitTimeout = cfg.Timing.Commit
	rc.SnapshotThreshold = 4096
	rc.SnapshotInterval = 30 * time.Second
	rc.NotifyCh = n.notify
	rc.LogOutput = io.Discard
	rc.LogLevel = "ERROR"

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		n.closeStores()
		return nil, err
	}
	if !existing {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		// Every node bootstraps with the same configuration; raft treats
		// identical bootstraps as one.
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("placement bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, store, store, snaps, trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("placement raft: %w", err)
	}
	n.raft = r
	n.readSub, err = n.nc.QueueSubscribe(wire.SubjectRead, wire.QueueRead, n.handleRead)
	if err != nil {
		n.Shutdown()
		return nil, err
	}
	n.nodeReadSub, err = n.nc.Subscribe(wire.NodeReadSubject(cfg.ID), n.handleRead)
	if err != nil {
		n.Shutdown()
		return nil, err
	}
	n.registerMetrics(cfg.Registry)
	n.prov = provisioner{pending: map[string]bool{}, backoff: map[string]time.Time{}, kick: make(chan struct{}, 1)}
	n.wg.Add(2)
	go n.watchLeadership()
	go n.provisionLoop()
	return n, nil
}

func (n *Node) closeStores() {
	if n.trans != nil {
		n.trans.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// ID is the node id.
func (n *Node) ID() string { return n.cfg.ID }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Raft exposes the raft instance for status and tests.
func (n *Node) Raft() *raft.Raft { return n.raft }

// Read runs fn over the local ledger under its read lock.
func (n *Node) Read(fn func(*Ledger)) { n.fsm.Read(fn) }

// LeaderID returns the id of the leader this node knows, or "".
func (n *Node) LeaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// WaitForLeader waits until the cluster has a leader, as this node sees it.
func (n *Node) WaitForLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n.LeaderID() != "" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("placement: no leader within " + timeout.String())
}

// Shutdown stops the node; its data directory keeps the Raft state.
func (n *Node) Shutdown() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	n.mu.Lock()
	n.unsubscribeLeaderLocked()
	if n.readSub != nil {
		n.readSub.Unsubscribe()
	}
	if n.nodeReadSub != nil {
		n.nodeReadSub.Unsubscribe()
	}
	n.mu.Unlock()
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	n.wg.Wait()
	n.closeStores()
	return err
}

// apply proposes a command and waits for it to commit and apply.
func (n *Node) apply(t CmdType, body any) (any, error) {
	v, _, err := n.applyIndex(t, body)
	return v, err
}

// applyIndex is apply that also returns the entry's Raft index, which
// readers use to reject snapshots older than a write they saw.
func (n *Node) applyIndex(t CmdType, body any) (any, uint64, error) {
	buf, err := Encode(t, body)
	if err != nil {
		return nil, 0, err
	}
	// ApplyTimeout bounds the enqueue only. Once enqueued, the answer is
	// the entry's fate: committed, or failed because this node lost
	// leadership (without a quorum it steps down within its lease
	// timeout). A timer of our own here once reported committed grants as
	// failed, and nobody released them.
	f := n.raft.Apply(buf, n.cfg.ApplyTimeout)
	if err = f.Error(); err != nil {
		return nil, 0, &wire.Error{Type: "ServiceException", Message: "placement could not commit (no Raft quorum?): " + err.Error()}
	}
	res := f.Response().(Result)
	return res.Value, f.Index(), res.Err
}

func typedError(err error) *wire.Error {
	var pe *wire.Error
	if errors.As(err, &pe) {
		return pe
	}
	var ve *quota.ValidationError
	switch {
	case errors.As(err, &ve):
		return &wire.Error{Type: "InvalidParameterValueException", Message: ve.Message}
	case errors.Is(err, ErrNotFound):
		return &wire.Error{Type: "ResourceNotFoundException", Message: trimType(err)}
	case errors.Is(err, ErrPrecondition):
		return &wire.Error{Type: "PreconditionFailedException", Message: trimType(err)}
	case errors.Is(err, ErrNoProvisionedConfig):
		return &wire.Error{Type: "ProvisionedConcurrencyConfigNotFoundException", Message: trimType(err)}
	case errors.Is(err, ErrConflict):
		return &wire.Error{Type: "ResourceConflictException", Message: trimType(err)}
	case errors.Is(err, ErrUnknownCommand):
		return &wire.Error{Type: "InvalidRequestContentException", Message: err.Error()}
	}
	return &wire.Error{Type: "ServiceException", Message: err.Error()}
}

func trimType(err error) string {
	s := err.Error()
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' && s[i+1] == ' ' {
			return s[i+2:]
		}
	}
	return s
}
