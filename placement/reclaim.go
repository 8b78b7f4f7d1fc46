package placement

import (
	"sort"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// createSandbox is the cold-start decision: admit, or retire an idle
// sandbox of the same account to make room, or send the caller back to the
// warm path, or throttle. The leader checks its committed state first, so a
// throttle costs no Raft entry; the authoritative decision is still the one
// the FSM makes when it applies.
//
// Retries are exact: an id already granted is answered from the ledger
// without looking for a victim, and concurrent requests with one id share a
// single decision, so a retry never retires a warm sandbox for nothing.
func (n *Node) createSandbox(c CreateSandbox) wire.Response {
	n.mu.Lock()
	if n.inflightGrants == nil {
		n.inflightGrants = map[string]*grantCall{}
	}
	if call, ok := n.inflightGrants[c.ID]; ok {
		n.mu.Unlock()
		<-call.done
		return call.resp
	}
	call := &grantCall{done: make(chan struct{})}
	n.inflightGrants[c.ID] = call
	n.mu.Unlock()
	call.resp = n.decideSandbox(c)
	n.mu.Lock()
	delete(n.inflightGrants, c.ID)
	n.mu.Unlock()
	close(call.done)
	return call.resp
}

type grantCall struct {
	done chan struct{}
	resp wire.Response
}

func (n *Node) signed(g *Grant) wire.Response {
	if g.Sandbox != nil {
		g.Token = wire.GrantToken(n.cfg.GrantKey, g.Sandbox)
	}
	return wire.Response{Grant: g}
}

func (n *Node) decideSandbox(c CreateSandbox) wire.Response {
	var d quota.Decision
	var existing *Sandbox
	var workers []string
	n.fsm.Read(func(l *Ledger) {
		for id := range l.s.Workers {
			workers = append(workers, id)
		}
		if sb, ok := l.s.Sandboxes[c.ID]; ok {
			cp := *sb
			existing = &cp
		}
		d = l.Check(c.Account, c.Function)
	})
	if existing != nil {
		if existing.Account != c.Account || existing.Function != c.Function || existing.Version != c.Version {
			return wire.Response{Grant: &Grant{Err: ErrIDInUse}}
		}
		return n.signed(&Grant{Sandbox: existing})
	}
	var release []string
	for attempt := 0; attempt < 4; attempt++ {
		if !d.Admit && len(release) == 0 {
			if d.Reclaim == quota.ScopeNone {
				return wire.Response{Grant: &Grant{Reason: d.Reason}}
			}
			victim, warm := n.findVictim(c, d.Reclaim)
			if warm {
				return wire.Response{Grant: &Grant{Warm: true, Reason: d.Reason}}
			}
			if victim == "" {
				// The search takes a while under load (a worker's answer, a
				// shared probe): what was full may have been released
				// meanwhile, and a throttle now would come below the limit.
				n.fsm.Read(func(l *Ledger) { d = l.Check(c.Account, c.Function) })
				if !d.Admit {
					return wire.Response{Grant: &Grant{Reason: d.Reason}}
				}
			} else {
				release = []string{victim}
			}
		}
		if !c.Deadline.IsZero() && time.Now().After(c.Deadline) {
			// The caller has given up (or will before this answer
			// reaches it): a grant now would hold capacity nobody uses
			// until its cancel, and 429 others below the limit.
			if len(release) > 0 {
				go n.releaseEventually(release)
			}
			return wire.Response{Error: &wire.Error{Type: "ServiceException", Message: "placement could not decide within the caller's deadline (overloaded): retry"}}
		}
		c.Now = time.Now().UnixNano()
		c.Release = release
		c.Avoid = n.leases.avoid(time.Now(), n.cfg.Lease.RenewEvery(), workers)
		v, err := n.apply(CmdCreateSandbox, c)
		if err != nil {
			if len(release) > 0 {
				// The victim is gone from its worker: its slot must come
				// back even though this grant failed.
				go n.releaseEventually(release)
			}
			return wire.Response{Error: typedError(err)}
		}
		g := v.(*Grant)
		if g.Sandbox != nil || g.Reclaim == quota.ScopeNone || g.Err != "" {
			return n.signed(g)
		}
		// Committed state moved between the check and the apply (the
		// victim, if any, is released by now): decide again.
		d = quota.Decision{Reclaim: g.Reclaim, Reason: g.Reason}
		release = nil
	}
	return wire.Response{Grant: &Grant{Reason: d.Reason}}
}

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

// maxRetireAttempts bounds the retire requests of one reclaim.
const maxRetireAttempts = 3

// findVictim chooses, from the idle sandboxes the workers last reported,
// the least recently used one in scope (quota.ChooseVictim, the rule the
// simulator applies too) and asks its owner to retire it. No worker is
// asked anything when the view holds no candidate: a throttle under
// overload costs no fan-out. An idle sandbox of the very function and
// version asking is never reclaimed for it: warm is true and the caller
// takes the warm path instead.
func (n *Node) findVictim(c CreateSandbox, scope quota.Scope) (victim string, warm bool) {
	entries, owner, more := n.leases.idleOf(c.Account)
	pool := map[string]quota.Pool{}
	var reserved []string
	n.fsm.Read(func(l *Ledger) {
		for _, f := range l.s.Functions {
			if f.Account == c.Account && f.Reserved != nil {
				reserved = append(reserved, f.Name)
			}
		}
		for _, e := range entries {
			if sb, ok := l.s.Sandboxes[e.ID]; ok && sb.Worker == owner[e.ID] {
				pool[e.ID] = sb.Pool
			}
		}
	})
	// probeList is the workers holding sandboxes in scope, most first. It
	// scans the ledger, so only a decision the view could not serve pays.
	probeList := func() []string {
		var probe []string
		n.fsm.Read(func(l *Ledger) {
			per := map[string]int{}
			for _, sb := range l.s.Sandboxes {
				if sb.Account != c.Account || (sb.Function == c.Function && sb.Version == c.Version) {
					continue
				}
				if quota.InScope(quota.Idle{Account: sb.Account, Function: sb.Function, Reserved: sb.Pool == quota.PoolReserved}, c.Account, c.Function, scope) {
					per[sb.Worker]++
				}
			}
			for w := range per {
				probe = append(probe, w)
			}
			sort.Slice(probe, func(i, j int) bool {
				if per[probe[i]] != per[probe[j]] {
					return per[probe[i]] > per[probe[j]]
				}
				return probe[i] < probe[j]
			})
		})
		return probe
	}
	var cands []quota.Idle
	for _, e := range entries {
		p, known := pool[e.ID]
		if !known {
			continue // not (or no longer) granted on that worker
		}
		if e.Function == c.Function && e.Version == c.Version {
			return "", true
		}
		cands = append(cands, quota.Idle{ID: e.ID, Account: e.Account, Function: e.Function, Reserved: p == quota.PoolReserved, LastUsed: time.Duration(e.LastUsedNs)})
	}
	sort.Strings(reserved)
	query := wire.IdleQuery{Account: c.Account, Function: c.Function, Version: c.Version, Scope: scope, Reserved: reserved}
	for attempt := 0; attempt < maxRetireAttempts; attempt++ {
		v, ok := quota.ChooseVictim(cands, c.Account, c.Function, scope)
		if !ok {
			// Reports list a few idle sandboxes per function, and are up
			// to idleReportEvery old: a worker that reported more, or that
			// holds sandboxes in scope at all, is asked for its least
			// recently used idle one. A worker that had none a moment ago
			// is not asked again (probeQuiet), and reclaims at once share
			// one probe of a worker (probe): under overload the cost of a
			// throttle stays bounded per worker, not per request.
			seen := map[string]bool{}
			for _, w := range append(more, probeList()...) {
				if seen[w] {
					continue
				}
				seen[w] = true
				if id, ok := n.probe(w, c, query); ok {
					return id, false
				}
			}
			return "", false
		}
		for i := range cands {
			if cands[i].ID == v.ID {
				cands = append(cands[:i], cands[i+1:]...)
				break
			}
		}
		w := owner[v.ID]
		n.leases.takeIdle(w, c.Account, v.ID)
		a, err := n.workers.Retire(w, wire.RetireRequest{ID: v.ID, Query: query}, retireTimeout(c))
		if err != nil {
			n.log.Warn("reclaim: worker did not answer the retire request", "worker", w, "err", err)
			continue
		}
		if a.OK {
			return a.ID, false
		}
	}
	return "", false
}

// retireTimeout bounds a retire request of a reclaim by the caller's
// deadline: past it the grant would be refused anyway, and a worker that
// does not answer (paused, cut off) must not hold the decision for
// reclaimTimeout after the caller gave up. A late answer still releases its
// victim (natsWorkers.late).
func retireTimeout(c CreateSandbox) time.Duration {
	d := reclaimTimeout
	if !c.Deadline.IsZero() {
		d = min(d, time.Until(c.Deadline))
	}
	return max(d, time.Millisecond)
}

// probe asks worker w for its least recently used idle sandbox in the
// query's scope. A probe of w for the account already in flight is waited
// for instead: when it found one (for its own caller) w may hold more and
// is asked again; when w had none or did not answer, it is not asked.
func (n *Node) probe(w string, c CreateSandbox, q wire.IdleQuery) (string, bool) {
	for turn := 0; turn < maxRetireAttempts; turn++ {
		call, mine := n.leases.beginProbe(w, c.Account, time.Now())
		if call == nil {
			return "", false // it had none a moment ago
		}
		if !mine {
			t := time.NewTimer(retireTimeout(c))
			select {
			case <-call.done:
				t.Stop()
			case <-t.C:
				return "", false
			case <-n.done:
				t.Stop()
				return "", false
			}
			if !call.found {
				return "", false
			}
			continue
		}
		n.leases.takeIdle(w, c.Account, "")
		a, err := n.workers.Retire(w, wire.RetireRequest{Query: q}, retireTimeout(c))
		n.leases.endProbe(w, c.Account, call, err == nil && a.OK, err == nil && !a.OK, time.Now())
		if err == nil && a.OK {
			return a.ID, true
		}
		return "", false
	}
	return "", false
}

// trim enforces a lowered limit: sandboxes above the new caps are dropped
// by their workers (idle ones at once, busy ones when their invocation ends)
// and released through the usual path. Until then the excess only finishes
// what it is running: no new invocation starts on it.
//
// A busy sandbox among the excess still runs, and counts, until its
// invocation ends; meanwhile a kept sandbox that finished would take the
// next warm request with the group still over its cap, and in-flight would
// exceed the new limit. So when any dropped sandbox is busy (or a worker
// did not say), every sandbox of a group still over its cap is dropped too:
// new invocations then go through placement, which admits them once what
// is held fits the new limit, as Lambda throttles until concurrency is
// under a lowered reservation.
func (n *Node) trim(account string) {
	var excess map[string][]string
	n.fsm.Read(func(l *Ledger) { excess = l.Excess(account) })
	if n.drop("trim", excess) == 0 {
		return
	}
	var over map[string][]string
	n.fsm.Read(func(l *Ledger) { over = l.OverCap(account) })
	n.drop("trim (over the cap while draining)", over)
}

// drop asks each worker to drop its sandboxes of ids and returns how many
// were busy, counting a worker that did not answer as all busy.
func (n *Node) drop(why string, ids map[string][]string) int {
	draining := 0
	for w, list := range ids {
		d, err := n.workers.Drop(w, list)
		if err != nil {
			n.log.Warn(why+": worker did not answer", "worker", w, "err", err)
			d = len(list)
		}
		draining += d
	}
	return draining
}

func (n *Node) reconcile(c ReconcileWorker) wire.Response {
	c.Now = time.Now().UnixNano()
	c.GraceNs = int64(n.cfg.Grace)
	need := false
	n.fsm.Read(func(l *Ledger) { need = l.NeedsReconcile(c) })
	if !need {
		return wire.Response{Grant: &Grant{}}
	}
	v, err := n.apply(CmdReconcileWorker, c)
	if err != nil {
		return wire.Response{Error: typedError(err)}
	}
	return wire.Response{Grant: v.(*Grant)}
}
