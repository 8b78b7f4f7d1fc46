package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/quota"
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
	// StreamLayer, when set, carries Raft instead of plain TCP on RaftAddr
	// (internal/faultnet injects network faults through it).
	StreamLayer raft.StreamLayer
	// Members, when set, lets placement react to workers joining and dying.
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

	mu          sync.Mutex
	silentSince map[string]time.Time // workers that timed out, since when
	leaderSub   *nats.Subscription
	readSub     *nats.Subscription
	notify      chan bool
	done        chan struct{}
	wg          sync.WaitGroup
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
	dir := filepath.Join(cfg.DataDir, cfg.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("placement data dir: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID, "role", "placement"), nc: cfg.NATS, done: make(chan struct{}), notify: make(chan bool, 16)}
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
	n.readSub, err = n.nc.QueueSubscribe(SubjectRead, queueRead, n.handleRead)
	if err != nil {
		n.Shutdown()
		return nil, err
	}
	n.registerMetrics(cfg.Registry)
	n.wg.Add(1)
	go n.watchLeadership()
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
	if n.leaderSub != nil {
		n.leaderSub.Unsubscribe()
		n.leaderSub = nil
	}
	if n.readSub != nil {
		n.readSub.Unsubscribe()
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

func (n *Node) watchLeadership() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.notify:
			n.setLeader(leader)
		case <-t.C:
			// Membership may change while nobody leads; the new leader and
			// a periodic pass catch up on it.
			if n.IsLeader() {
				n.syncWorkers()
			}
		}
	}
}

func (n *Node) setLeader(leader bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if leader && n.leaderSub == nil {
		sub, err := n.nc.Subscribe(SubjectLeader, n.handleLeader)
		if err != nil {
			n.log.Error("subscribe leader subject", "err", err)
			return
		}
		n.leaderSub = sub
		n.log.Info("became leader")
		go n.syncWorkers()
	}
	if !leader && n.leaderSub != nil {
		n.leaderSub.Unsubscribe()
		n.leaderSub = nil
		n.log.Info("lost leadership")
	}
}

// syncWorkers makes the ledger's worker list agree with membership: workers
// that joined are registered, workers that died are released.
func (n *Node) syncWorkers() {
	if n.cfg.Members == nil || !n.IsLeader() {
		return
	}
	alive := map[string]membership.Member{}
	for _, m := range n.cfg.Members.Members() {
		if m.Role == membership.RoleWorker {
			alive[m.ID] = m
		}
	}
	var known map[string]Worker
	n.fsm.Read(func(l *Ledger) {
		known = make(map[string]Worker, len(l.s.Workers))
		for id, w := range l.s.Workers {
			known[id] = *w
		}
	})
	for id, m := range alive {
		if w, ok := known[id]; !ok || !w.Alive || w.Capacity != m.Capacity || w.MemoryMB != m.MemoryMB {
			n.apply(CmdRegisterWorker, Worker{ID: id, Capacity: m.Capacity, MemoryMB: m.MemoryMB})
		}
	}
	for id, w := range known {
		if _, ok := alive[id]; !ok && (w.Alive || n.hasSandboxes(id)) && n.unreachable(id) {
			n.log.Info("worker dead: releasing its sandboxes", "worker", id)
			n.apply(CmdWorkerDead, WorkerDead{ID: id})
		}
	}
}

// unreachable confirms a membership verdict before capacity is released.
// NATS is a worker's only ingress: "no responders" on its subject means its
// connection is gone and it cannot start another invocation. A worker that
// still answers was only slow to probe (a starved process), and releasing
// its sandboxes would let the account exceed its limit; one that times out
// is released once it has been silent for unreachableAfter.
func (n *Node) unreachable(id string) bool {
	_, err := n.nc.Request(WorkerSubject(id, "stats"), nil, 300*time.Millisecond)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.silentSince == nil {
		n.silentSince = map[string]time.Time{}
	}
	switch {
	case err == nil:
		delete(n.silentSince, id)
		return false
	case errors.Is(err, nats.ErrNoResponders):
		delete(n.silentSince, id)
		return true
	}
	first, ok := n.silentSince[id]
	if !ok {
		n.silentSince[id] = time.Now()
		return false
	}
	if time.Since(first) < unreachableAfter {
		return false
	}
	delete(n.silentSince, id)
	return true
}

const unreachableAfter = 3 * time.Second

func (n *Node) hasSandboxes(worker string) bool {
	found := false
	n.fsm.Read(func(l *Ledger) { found = l.wkCount[worker] > 0 })
	return found
}

// MemberJoin and MemberLeave make the node a membership.Observer; they only
// trigger a sync so the decision is made from the full member list.
func (n *Node) MemberJoin(m membership.Member) {
	if m.Role == membership.RoleWorker {
		go n.syncWorkers()
	}
}
func (n *Node) MemberLeave(m membership.Member) {
	if m.Role == membership.RoleWorker {
		go n.syncWorkers()
	}
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
	f := n.raft.Apply(buf, n.cfg.ApplyTimeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-time.After(n.cfg.ApplyTimeout):
		err = raft.ErrEnqueueTimeout
	}
	if err != nil {
		return nil, 0, &Error{Type: "ServiceException", Message: "placement could not commit (no Raft quorum?): " + err.Error()}
	}
	res := f.Response().(Result)
	return res.Value, f.Index(), res.Err
}

func (n *Node) reply(m *nats.Msg, resp Response) {
	b, _ := json.Marshal(resp)
	_ = m.Respond(b)
}

func typedError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var ve *quota.ValidationError
	switch {
	case errors.As(err, &ve):
		return &Error{Type: "InvalidParameterValueException", Message: ve.Message}
	case errors.Is(err, ErrNotFound):
		return &Error{Type: "ResourceNotFoundException", Message: trimType(err)}
	case errors.Is(err, ErrConflict):
		return &Error{Type: "ResourceConflictException", Message: trimType(err)}
	case errors.Is(err, ErrUnknownCommand):
		return &Error{Type: "InvalidRequestContentException", Message: err.Error()}
	}
	return &Error{Type: "ServiceException", Message: err.Error()}
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

func (n *Node) handleLeader(m *nats.Msg) {
	var req Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		n.reply(m, Response{Error: &Error{Type: "InvalidRequestContentException", Message: "placement request does not parse: " + err.Error()}})
		return
	}
	// Raft applies are slow relative to NATS dispatch; run each request on
	// its own goroutine so concurrent proposals batch into one commit.
	go func() { n.reply(m, n.serve(&req)) }()
}

func (n *Node) serve(req *Request) Response {
	switch {
	case req.Op == OpCreateSandbox && req.Sandbox != nil:
		return n.createSandbox(*req.Sandbox)
	case req.Op == OpCreateFunction && req.Function != nil:
		req.Function.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdCreateFunction, req.Function)
		if err != nil {
			return Response{Error: typedError(err)}
		}
		n.publishEvent("function", req.Function.Account, req.Function.Name, idx)
		return Response{Function: v.(*Function), Index: idx}
	case req.Op == OpDeleteFunction && req.Delete != nil:
		v, idx, err := n.applyIndex(CmdDeleteFunction, req.Delete)
		if err != nil {
			return Response{Error: typedError(err)}
		}
		n.publishEvent("delete", req.Delete.Account, req.Delete.Name, idx)
		return Response{Function: v.(*Function), Index: idx}
	case req.Op == OpSetLimit && req.Limit != nil:
		v, idx, err := n.applyIndex(CmdSetAccountLimit, req.Limit)
		if err != nil {
			return Response{Error: typedError(err)}
		}
		n.publishEvent("account", req.Limit.Account, "", idx)
		go n.trim(req.Limit.Account)
		return Response{Account: v.(*Account), Index: idx}
	case req.Op == OpSetReserved && req.Reserved != nil:
		v, idx, err := n.applyIndex(CmdSetReserved, req.Reserved)
		if err != nil {
			return Response{Error: typedError(err)}
		}
		n.publishEvent("function", req.Reserved.Account, req.Reserved.Name, idx)
		go n.trim(req.Reserved.Account)
		return Response{Function: v.(*Function), Index: idx}
	case req.Op == OpRelease:
		if _, err := n.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: req.Release, Now: time.Now().UnixNano()}); err != nil {
			return Response{Error: typedError(err)}
		}
		return Response{}
	case req.Op == OpReconcile && req.Reconcile != nil:
		return n.reconcile(*req.Reconcile)
	case req.Op == OpSnapshot:
		return Response{Snapshot: n.Snapshot()}
	case req.Op == OpSuspect && req.Worker != "":
		// A gateway found a granted worker unreachable: confirm over NATS
		// and release it now rather than at the next membership verdict.
		if n.unreachable(req.Worker) {
			n.log.Info("worker unreachable: releasing its sandboxes", "worker", req.Worker)
			if _, err := n.apply(CmdWorkerDead, WorkerDead{ID: req.Worker}); err != nil {
				return Response{Error: typedError(err)}
			}
		}
		return Response{}
	}
	return Response{Error: &Error{Type: "InvalidRequestContentException", Message: "unknown placement op " + req.Op}}
}

// Event is a change notice on SubjectEvents. Index is the Raft index of
// the change, so a reader can ignore snapshots older than it.
type Event struct {
	Kind      string `json:"kind"`
	Account   string `json:"account"`
	Function  string `json:"function"`
	Index     uint64 `json:"index"`
	Term      uint64 `json:"term,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
}

func (n *Node) publishEvent(kind, account, name string, idx uint64) {
	b, _ := json.Marshal(Event{Kind: kind, Account: account, Function: name, Index: idx})
	_ = n.nc.Publish(SubjectEvents, b)
}

// createSandbox is the cold-start decision: admit, or retire an idle
// sandbox of the same account to make room, or throttle. The leader checks
// its committed state first, so a throttle costs no Raft entry; the
// authoritative decision is still the one the FSM makes when it applies.
func (n *Node) createSandbox(c CreateSandbox) Response {
	var d quota.Decision
	n.fsm.Read(func(l *Ledger) { d = l.Check(c.Account, c.Function) })
	var release []string
	for attempt := 0; attempt < 4; attempt++ {
		if !d.Admit && len(release) == 0 {
			if d.Reclaim == quota.ScopeNone {
				return Response{Grant: &Grant{Reason: d.Reason}}
			}
			victim, ok := n.findVictim(c, d.Reclaim)
			if !ok {
				return Response{Grant: &Grant{Reason: d.Reason}}
			}
			release = []string{victim}
		}
		c.Now = time.Now().UnixNano()
		c.Release = release
		v, err := n.apply(CmdCreateSandbox, c)
		if err != nil {
			if len(release) > 0 {
				// The victim is gone from its worker: its slot must come
				// back even though this grant failed.
				go n.releaseEventually(release)
			}
			return Response{Error: typedError(err)}
		}
		g := v.(*Grant)
		if g.Sandbox != nil || g.Reclaim == quota.ScopeNone || g.Err != "" {
			return Response{Grant: g}
		}
		// Committed state moved between the check and the apply (the
		// victim, if any, is released by now): decide again.
		d = quota.Decision{Reclaim: g.Reclaim, Reason: g.Reason}
		release = nil
	}
	return Response{Grant: &Grant{Reason: d.Reason}}
}

// reclaimTimeout bounds each worker's answer during a reclaim. A worker that
// misses it is skipped, which can turn a reclaim into a throttle: it is long
// enough for a starved worker, short enough for the cold path's budget.
const reclaimTimeout = 400 * time.Millisecond

// releaseEventually retries a release until it commits or this node stops
// leading (the worker's reconcile covers the rest).
func (n *Node) releaseEventually(ids []string) {
	for wait := 50 * time.Millisecond; n.IsLeader(); wait *= 2 {
		if _, err := n.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: ids}); err == nil {
			return
		}
		select {
		case <-n.done:
			return
		case <-time.After(wait):
		}
	}
}

// findVictim asks the workers holding the account's sandboxes for their LRU
// idle sandbox in scope, picks the least recently used (quota.ChooseVictim,
// the rule the simulator applies too), and retires it; if its owner has
// nothing idle any more, the next best is tried.
func (n *Node) findVictim(c CreateSandbox, scope quota.Scope) (string, bool) {
	var workers []string
	reserved := map[string]bool{}
	n.fsm.Read(func(l *Ledger) {
		workers = l.WorkersWith(c.Account)
		for _, f := range l.s.Functions {
			if f.Account == c.Account && f.Reserved != nil {
				reserved[f.Name] = true
			}
		}
	})
	query := IdleQuery{Account: c.Account, Function: c.Function, Scope: scope}
	for f := range reserved {
		query.Reserved = append(query.Reserved, f)
	}
	q, _ := json.Marshal(query)
	var mu sync.Mutex
	var cands []quota.Idle
	owner := map[string]string{} // candidate id -> worker
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func(w string) {
			defer wg.Done()
			m, err := n.nc.Request(WorkerSubject(w, "idle"), q, reclaimTimeout)
			if err != nil {
				n.log.Warn("reclaim: worker did not answer the idle query", "worker", w, "err", err)
				return
			}
			var a IdleAnswer
			if json.Unmarshal(m.Data, &a) == nil && a.ID != "" {
				mu.Lock()
				cands = append(cands, quota.Idle{ID: a.ID, Account: c.Account, Function: a.Function, Reserved: reserved[a.Function], LastUsed: time.Duration(a.LastUsedNs)})
				owner[a.ID] = w
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	n.log.Debug("reclaim candidates", "account", c.Account, "workers", len(workers), "candidates", len(cands))
	for {
		v, ok := quota.ChooseVictim(cands, c.Account, c.Function, scope)
		if !ok {
			return "", false
		}
		cands = slices.DeleteFunc(cands, func(x quota.Idle) bool { return x.ID == v.ID })
		b, _ := json.Marshal(RetireRequest{ID: v.ID, Query: query})
		m, err := n.nc.Request(WorkerSubject(owner[v.ID], "retire"), b, reclaimTimeout)
		if err != nil {
			n.log.Warn("reclaim: worker did not answer the retire request", "worker", owner[v.ID], "err", err)
			continue
		}
		var a RetireAnswer
		if json.Unmarshal(m.Data, &a) == nil && a.OK {
			return a.ID, true
		}
	}
}

// trim enforces a lowered limit: sandboxes above the new caps are dropped
// by their workers (idle ones at once, busy ones when their invocation ends)
// and released through the usual path. Until then the excess only finishes
// what it is running: no new invocation starts on it.
func (n *Node) trim(account string) {
	var excess map[string][]string
	n.fsm.Read(func(l *Ledger) { excess = l.Excess(account) })
	for w, ids := range excess {
		b, _ := json.Marshal(DropRequest{IDs: ids})
		if _, err := n.nc.Request(WorkerSubject(w, "drop"), b, time.Second); err != nil {
			n.log.Warn("trim: worker did not answer", "worker", w, "err", err)
		}
	}
}

func (n *Node) reconcile(c ReconcileWorker) Response {
	c.Now = time.Now().UnixNano()
	c.GraceNs = int64(n.cfg.Grace)
	need := false
	n.fsm.Read(func(l *Ledger) { need = l.NeedsReconcile(c) })
	if !need {
		return Response{Grant: &Grant{}}
	}
	v, err := n.apply(CmdReconcileWorker, c)
	if err != nil {
		return Response{Error: typedError(err)}
	}
	return Response{Grant: v.(*Grant)}
}

func (n *Node) handleRead(m *nats.Msg) {
	var req Request
	if err := json.Unmarshal(m.Data, &req); err != nil || req.Op != OpSnapshot {
		n.reply(m, Response{Error: &Error{Type: "InvalidRequestContentException", Message: "placement read: want op snapshot"}})
		return
	}
	n.reply(m, Response{Snapshot: n.Snapshot()})
}

// Snapshot returns this node's read view.
func (n *Node) Snapshot() *Snapshot {
	s := &Snapshot{Node: n.cfg.ID, Leader: n.LeaderID(), Term: termOf(n.raft), Index: n.raft.AppliedIndex(), Counts: map[string]int{}, Accounted: map[string]int{}, Rate: n.cfg.Rate}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			st := "follower"
			if string(srv.ID) == s.Leader {
				st = "leader"
			}
			s.Peers = append(s.Peers, PeerState{ID: string(srv.ID), Addr: string(srv.Address), State: st})
		}
	}
	n.fsm.Read(func(l *Ledger) {
		for _, a := range l.s.Accounts {
			s.Accounts = append(s.Accounts, *a)
		}
		for k, f := range l.s.Functions {
			s.Functions = append(s.Functions, *f)
			s.Counts[k] = l.FunctionSandboxes(f.Account, f.Name)
		}
		for _, w := range l.s.Workers {
			s.Workers = append(s.Workers, *w)
		}
		for _, sb := range l.s.Sandboxes {
			s.Accounted[sb.Account] = l.AccountSandboxes(sb.Account)
		}
		s.ClusterID = l.s.ClusterID
		s.Digest = l.Digest()
		s.Index = n.raft.AppliedIndex()
	})
	sort.Slice(s.Functions, func(i, j int) bool {
		return FunctionKey(s.Functions[i].Account, s.Functions[i].Name) < FunctionKey(s.Functions[j].Account, s.Functions[j].Name)
	})
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })
	return s
}

func termOf(r *raft.Raft) uint64 {
	var t uint64
	fmt.Sscan(r.Stats()["term"], &t)
	return t
}
