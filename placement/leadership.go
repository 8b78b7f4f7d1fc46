package placement

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/wire"
)

// barrierTimeout bounds the wait for a new leader's FSM to catch up.
const barrierTimeout = 5 * time.Second

func (n *Node) watchLeadership() {
	defer n.wg.Done()
	every := n.cfg.Lease.TTL / 16
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := time.Now()
	n.lastTick.Store(last.UnixNano())
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.notify:
			if leader {
				n.establishLeadership()
			} else {
				n.revokeLeadership()
			}
		case now := <-tick.C:
			gap := now.Sub(last)
			last = now
			n.lastTick.Store(now.UnixNano())
			if gap > 4*every {
				// This node was not running (paused, starved): the workers'
				// silence meanwhile is its own. Count them as renewed now;
				// holding their capacity a little longer is always safe.
				// Its leadership may have ended meanwhile: renewals wait
				// for a verification again.
				n.verified.Store(false)
				n.leases.reset(now)
				continue
			}
			if n.isServing() {
				n.expireLeases()
			} else if n.IsLeader() {
				// A barrier that failed earlier is tried again while the
				// node still leads.
				n.establishLeadership()
			}
		}
	}
}

// establishLeadership runs before the node serves anything as leader
// (Nomad's establishLeadership): a Barrier, so that every entry of earlier
// terms is applied to this FSM and Check, reconcile and trim see committed
// state; the cluster id, once; a fresh lease table; then the subjects.
func (n *Node) establishLeadership() {
	if n.isServing() || !n.IsLeader() {
		return
	}
	if err := n.raft.Barrier(barrierTimeout).Error(); err != nil {
		n.log.Warn("leader barrier failed; not serving yet", "err", err)
		return
	}
	var id string
	n.fsm.Read(func(l *Ledger) { id = l.s.ClusterID })
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		if _, err := n.apply(CmdSetClusterID, SetClusterID{ID: hex.EncodeToString(b[:])}); err != nil {
			n.log.Warn("could not set the cluster id", "err", err)
			return
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leading || n.raft.State() != raft.Leader {
		return
	}
	for subj, h := range map[string]nats.MsgHandler{
		wire.SubjectLeader:     n.handleLeader,
		wire.SubjectWorkerOps:  n.handleWorkerOp,
		wire.SubjectGatewayOps: n.handleGatewayOp,
	} {
		sub, err := n.nc.Subscribe(subj, h)
		if err != nil {
			n.log.Error("subscribe leader subject", "subject", subj, "err", err)
			n.unsubscribeLeaderLocked()
			return
		}
		sub.SetPendingLimits(pendingMsgs, pendingBytes)
		n.leaderSubs = append(n.leaderSubs, sub)
	}
	// The lease table starts after the subscriptions exist: until then a
	// worker's renewal got "no responders" and extended its own lease, so
	// every worker counts as renewed now.
	n.nc.Flush()
	n.leases.reset(time.Now())
	n.natsEpoch = n.nc.Stats().Reconnects
	n.verified.Store(true) // the Barrier just committed in this term
	n.leading = true
	n.log.Info("became leader")
}

// Pending limits of the leader's subscriptions: past them NATS drops
// messages for this subscriber (the callers time out and retry) instead of
// growing memory without bound.
const (
	pendingMsgs  = 8192
	pendingBytes = 64 << 20
)

// revokeLeadership stops serving at once: requests still queued get no
// answer from this node and are retried by their callers at the new leader.
func (n *Node) revokeLeadership() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leading {
		n.log.Info("lost leadership")
	}
	n.verified.Store(false)
	n.unsubscribeLeaderLocked()
}

func (n *Node) unsubscribeLeaderLocked() {
	for _, s := range n.leaderSubs {
		s.Unsubscribe()
	}
	n.leaderSubs = nil
	n.leading = false
}

// isServing reports whether leadership was established and not lost.
func (n *Node) isServing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading
}

// expireLeases releases the workers whose lease ran out: no renewal
// answered for TTL + Margin. The incarnation in the command makes sure a
// worker that registered again meanwhile keeps its new grants.
//
// A leader cut off from NATS gets no renewals while workers get "no
// responders" and keep their leases, so it never expires one unless its
// connection is up right now (a PING round trip) and has been since the
// table started: a reconnect starts the table again.
//
// It also verifies leadership first: a leader that was deposed while it was
// not running must not release anyone before it notices.
func (n *Node) expireLeases() {
	if !n.natsHealthy() {
		return
	}
	now := time.Now()
	if !n.anyExpired(now) {
		return
	}
	if !n.verifyLeader() {
		return
	}
	type wk struct {
		id  string
		inc uint64
	}
	var expired []wk
	n.fsm.Read(func(l *Ledger) {
		for id, w := range l.s.Workers {
			if n.leases.silentFor(id, now) > n.cfg.Lease.Expiry() {
				expired = append(expired, wk{id, w.Incarnation})
			}
		}
	})
	for _, w := range expired {
		n.log.Info("worker lease expired: releasing its sandboxes", "worker", w.id, "incarnation", w.inc)
		if _, err := n.apply(CmdWorkerDead, WorkerDead{ID: w.id, Incarnation: w.inc}); err == nil {
			n.leases.forget(w.id)
		}
	}
}

// natsHealthy reports whether the leader's NATS connection is up now and
// has not been re-established since the lease table started; otherwise it
// starts the table again. A leader whose connection stays down hands
// leadership to a node that can serve.
func (n *Node) natsHealthy() bool {
	ok := n.nc.IsConnected() && n.nc.FlushTimeout(n.cfg.Lease.TTL/8) == nil
	n.mu.Lock()
	defer n.mu.Unlock()
	rc := n.nc.Stats().Reconnects
	switch {
	case !ok:
		switch {
		case n.natsDownSince.IsZero():
			n.natsDownSince = time.Now()
			go n.probeNATS()
		case n.natsAnswered.After(n.natsDownSince):
			// The slow probe got its answer: the connection is slow (a
			// starved machine), not cut off. Handing over would cost the
			// cluster an election on the same starved machine. Leases
			// still wait for a quick round trip.
			n.natsDownSince = time.Time{}
		case time.Since(n.natsDownSince) > n.cfg.Lease.TTL:
			n.log.Warn("leader without NATS: handing over leadership")
			n.natsDownSince = time.Time{}
			go n.raft.LeadershipTransfer()
		}
		return false
	case rc != n.natsEpoch:
		n.natsEpoch = rc
		n.leases.reset(time.Now())
		n.natsDownSince = time.Time{}
		return false
	}
	n.natsDownSince = time.Time{}
	return true
}

// probeNATS waits up to a lease TTL for one round trip, so that a leader
// whose quick checks fail can tell a slow connection from a cut one before
// it hands over.
func (n *Node) probeNATS() {
	if n.nc.FlushTimeout(n.cfg.Lease.TTL) == nil {
		n.mu.Lock()
		n.natsAnswered = time.Now()
		n.mu.Unlock()
	}
}

// verifyLeader reports whether a quorum still follows this node, within a
// renewal period: an answer that does not come (a node shutting down never
// answers) counts as no.
func (n *Node) verifyLeader() bool {
	f := n.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(n.cfg.Lease.RenewEvery()):
		return false
	case <-n.done:
		return false
	}
}

// anyExpired is the cheap check before expireLeases verifies leadership.
func (n *Node) anyExpired(now time.Time) bool {
	found := false
	n.fsm.Read(func(l *Ledger) {
		for id := range l.s.Workers {
			if n.leases.silentFor(id, now) > n.cfg.Lease.Expiry() {
				found = true
				return
			}
		}
	})
	return found
}

// renew answers a worker's lease renewal without a Raft round trip: a
// renewal waiting behind the leader loop's log fsync (VerifyLeader goes
// through it) lapsed every lease at once on a slow disk. What keeps a
// deposed leader's answer harmless is in DESIGN.md ("Leases"): every
// placement node reads the same NATS stream, so the leader that could
// release a worker receives each renewal the deposed one answers; and a
// leader coming back from a pause (when queued renewals arrive) verifies
// its leadership before it answers again.
//
// A node that cannot verify it leads does not answer at all: another node
// that does lead may answer the same request, and an error from this one
// must not arrive first.
func (n *Node) renew(worker string, r wire.Renew) (wire.Response, bool) {
	received := time.Now()
	// A watch loop that has not ticked for a while means this node was
	// not running, and may not have noticed yet: verify.
	stalled := received.UnixNano()-n.lastTick.Load() > int64(4*n.cfg.Lease.TTL/16)
	if !n.verified.Load() || stalled {
		if !n.verifyLeader() {
			return wire.Response{}, false
		}
		n.verified.Store(true)
	}
	var cur *Worker
	n.fsm.Read(func(l *Ledger) {
		if w := l.s.Workers[worker]; w != nil {
			cp := *w
			cur = &cp
		}
	})
	if cur == nil || r.Incarnation == 0 || cur.Incarnation != r.Incarnation || cur.Capacity != r.Capacity || cur.MemoryMB != r.MemoryMB {
		v, err := n.apply(CmdRegisterWorker, Worker{ID: worker, Capacity: r.Capacity, MemoryMB: r.MemoryMB, Incarnation: r.Incarnation})
		if err != nil {
			return wire.Response{Error: typedError(err)}, true
		}
		cur = v.(*Worker)
		if cur.Incarnation != r.Incarnation {
			n.log.Info("worker registered", "worker", worker, "incarnation", cur.Incarnation)
		}
	}
	n.leases.renewed(worker, received)
	return wire.Response{Lease: &wire.Lease{Seq: r.Seq, Incarnation: cur.Incarnation, TTLNs: int64(n.cfg.Lease.TTL)}}, true
}

// LeasedWorkers is the number of workers holding a lease this leader
// granted (0 on a follower): the workers that can take new sandboxes.
func (n *Node) LeasedWorkers() int {
	if !n.isServing() {
		return 0
	}
	return n.leases.leased(time.Now(), n.cfg.Lease.TTL)
}

// MemberJoin and MemberLeave make the node a membership.Observer. They are
// hints only: a worker is released when its lease expires, never on a
// gossip verdict (a paused or partitioned worker may look dead and still
// hold a lease by its own clock). A leave makes the leader drop the
// worker's idle sandboxes from the reclaim view at once.
func (n *Node) MemberJoin(m membership.Member) {}

func (n *Node) MemberLeave(m membership.Member) {
	if m.Role == membership.RoleWorker {
		n.leases.setIdle(m.ID, wire.IdleReport{Full: true})
		n.leases.suspect(m.ID, time.Now())
	}
}
