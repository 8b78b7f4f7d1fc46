package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// Pending limits of the worker's subscriptions: past them NATS drops
// messages for this worker (callers time out and go elsewhere) rather than
// let a flood grow its memory without bound.
const (
	pendingMsgs  = 65536
	pendingBytes = 256 << 20
)

// mayStart reports whether an invocation may start now: a valid lease and a
// live NATS connection (NATS is the worker's only ingress and the way its
// results leave).
func (n *Node) mayStart(now time.Time) (bool, uint64) {
	ok, gen := n.lease.valid(now)
	return ok && n.nc.IsConnected(), gen
}

var errBadGrant = errors.New("cold invoke without a valid grant from placement")

// staleGrantError is a grant for another incarnation of this worker: it
// started nothing, and the caller places the invocation again.
type staleGrantError struct{ inc, cur uint64 }

func (e *staleGrantError) Error() string {
	return "grant for worker incarnation " + strconv.FormatUint(e.inc, 10) + ", this worker is incarnation " + strconv.FormatUint(e.cur, 10)
}

// renewSoon asks the renew loop for a renewal now.
func (n *Node) renewSoon() {
	select {
	case n.renewNow <- struct{}{}:
	default:
	}
}

// checkGrant verifies that placement granted this sandbox on this
// incarnation of this worker.
func (n *Node) checkGrant(h nats.Header, id string, k pool.Key) error {
	inc, _ := strconv.ParseUint(h.Get(wire.HdrWorkerInc), 10, 64)
	if cur := n.lease.incarnation(); inc != cur {
		if inc > cur {
			// Placement registered this worker again and granted before
			// the answer reached it: learn the new incarnation now.
			n.renewSoon()
		}
		return &staleGrantError{inc: inc, cur: cur}
	}
	if len(n.cfg.GrantKey) == 0 {
		return nil
	}
	granted, _ := strconv.ParseInt(h.Get(wire.HdrGranted), 10, 64)
	c := wire.GrantClaim{ID: id, Account: k.Account, Function: k.Function, Version: k.Version, Worker: n.cfg.ID, WorkerInc: inc, CreatedNs: granted}
	if !wire.VerifyGrant(n.cfg.GrantKey, c, h.Get(wire.HdrGrantToken)) {
		return errBadGrant
	}
	return nil
}

// renewLoop keeps the lease: one renewal every RenewEvery, the lease counted
// from the moment each was sent.
func (n *Node) renewLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.RenewEvery)
	defer t.Stop()
	for {
		n.renewOnce()
		select {
		case <-n.done:
			return
		case <-t.C:
		case <-n.renewNow:
		}
	}
}

func (n *Node) renewOnce() {
	seq, inc := n.lease.next()
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RenewEvery)
	defer cancel()
	resp, err := n.cfg.Placement.WorkerOp(ctx, n.cfg.ID, wire.OpRenew, wire.Request{Op: wire.OpRenew,
		Renew: &wire.Renew{Seq: seq, Incarnation: inc, Capacity: n.cfg.Capacity, MemoryMB: n.cfg.MemoryMB}})
	if errors.Is(err, wire.ErrNoLeader) && inc != 0 {
		// No placement node serves as leader (no quorum, or an election):
		// nothing can release this worker's sandboxes until one does, and a
		// new leader counts every worker as renewed when it starts serving.
		// The data plane keeps going on the sandboxes it has, as long as
		// its lease never lapsed (extendWithoutLeader).
		n.lease.extendWithoutLeader(seq, sent)
		return
	}
	if err != nil || resp.Lease == nil {
		return
	}
	l := resp.Lease
	if l.Seq == seq && l.Incarnation != n.lease.incarnation() {
		// The sandboxes go before the lease is valid again: in between, a
		// warm request could otherwise start on one whose capacity
		// placement has already given to another worker.
		n.log.Info("new incarnation: sandboxes of the previous one are void", "incarnation", l.Incarnation, "previous", inc)
		n.voidSandboxes()
	}
	n.lease.renewed(l.Seq, sent, l.Incarnation, time.Duration(l.TTLNs))
}

// voidSandboxes drops every sandbox: placement released them with the
// incarnation they were granted under. Running invocations are fenced;
// nothing is released again (those grants are gone already).
func (n *Node) voidSandboxes() {
	n.mu.Lock()
	defer n.mu.Unlock()
	var idle []*pool.Sandbox
	n.idleDirty = true
	n.pool.Each(func(sb *pool.Sandbox) {
		if sb.Busy {
			n.dropping[sb.ID] = true
			if c := n.running[sb.ID]; c != nil {
				close(c)
				n.running[sb.ID] = nil
			}
			return
		}
		idle = append(idle, sb)
	})
	for _, sb := range idle {
		n.pool.Remove(sb)
		n.updateWarmSub(sb.Key)
	}
	n.pending = nil
}

// watchdogTick is how often the worker looks at its lease on its own; the
// finishing invocation and each renewal look too.
const watchdogTick = 25 * time.Millisecond

// watchdogLoop fences running invocations the moment the lease runs out.
func (n *Node) watchdogLoop() {
	defer n.wg.Done()
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			if ok, _ := n.lease.valid(now); ok {
				continue
			}
			n.mu.Lock()
			for id, c := range n.running {
				if c != nil {
					close(c)
					n.running[id] = nil
				}
			}
			n.mu.Unlock()
		}
	}
}

// idleReportEvery is how often changes not published at once are.
const idleReportEvery = 20 * time.Millisecond

// idleReportPerFunction bounds a key's entries in a report: placement needs
// the least recently used few, and the count, not every idle sandbox.
const (
	idleReportPerFunction = 8
)

// noteIdleLocked is called on every change of key k's pool: the loop
// reports it within idleReportEvery. Publishing at once cost a message per
// invocation on the warm path; placement asks a worker directly when its
// report shows nothing to reclaim (placement/reclaim.go). Called with n.mu
// held.
func (n *Node) noteIdleLocked(k pool.Key, idle int) {
	if n.idleCount[k] == idle {
		return
	}
	if idle == 0 {
		delete(n.idleCount, k)
	} else {
		n.idleCount[k] = idle
	}
	n.idleDirty = true
}

func (n *Node) keyIdleLocked(k pool.Key, idle int) wire.KeyIdle {
	ki := wire.KeyIdle{Account: k.Account, Function: k.Function, Version: k.Version, Count: idle}
	for _, sb := range n.pool.IdleOf(nil, k, idleReportPerFunction) {
		if !n.dropping[sb.ID] {
			ki.Idle = append(ki.Idle, wire.IdleEntry{ID: sb.ID, Account: k.Account, Function: k.Function, Version: k.Version, LastUsedNs: int64(sb.LastUsed)})
		}
	}
	return ki
}

// idleReportLoop publishes the whole view when something changed unreported,
// and once per renewal period regardless (for a new leader).
func (n *Node) idleReportLoop() {
	defer n.wg.Done()
	t := time.NewTicker(idleReportEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			n.mu.Lock()
			if !n.idleDirty && now.Sub(last) < n.cfg.RenewEvery {
				n.mu.Unlock()
				continue
			}
			n.idleDirty = false
			r := wire.IdleReport{Incarnation: n.lease.incarnation(), Full: true, Keys: []wire.KeyIdle{}}
			n.pool.Keys(func(k pool.Key, idle, total int) {
				if idle > 0 {
					r.Keys = append(r.Keys, n.keyIdleLocked(k, idle))
				}
			})
			n.mu.Unlock()
			last = now
			b, _ := json.Marshal(r)
			_ = n.nc.Publish(wire.WorkerOpSubject(n.cfg.ID, wire.OpIdle), b)
		}
	}
}

// waitOrFence sleeps d, or less if the invocation is fenced meanwhile; it
// reports whether the full time passed.
func waitOrFence(d time.Duration, fenced <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-fenced:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-fenced:
		return false
	}
}
