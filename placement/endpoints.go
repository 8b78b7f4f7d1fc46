package placement

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// DefaultMaxInFlight bounds the leader's concurrent requests. Raft applies
// are slow relative to NATS dispatch, so requests run concurrently (their
// proposals batch into one commit), but never without bound: past it the
// leader answers a retryable ServiceException at once.
const DefaultMaxInFlight = 512

var errBusy = &wire.Error{Type: "ServiceException", Message: "placement is busy: retry"}

func (n *Node) reply(m *nats.Msg, resp wire.Response) {
	if m.Reply == "" {
		return
	}
	b, _ := json.Marshal(resp)
	_ = m.Respond(b)
}

// InFlight is the number of leader requests being served now (at most
// MaxInFlight).
func (n *Node) InFlight() int { return len(n.sem) }

// spawn runs fn on the bounded pool, or answers busy.
func (n *Node) spawn(m *nats.Msg, fn func() wire.Response) {
	n.spawnMaybe(m, func() (wire.Response, bool) { return fn(), true })
}

// spawnMaybe is spawn for a handler that may decide not to answer.
func (n *Node) spawnMaybe(m *nats.Msg, fn func() (wire.Response, bool)) {
	select {
	case n.sem <- struct{}{}:
	default:
		n.reply(m, wire.Response{Error: errBusy})
		return
	}
	go func() {
		defer func() { <-n.sem }()
		if !n.isServing() {
			return // leadership lost while queued: the caller retries elsewhere
		}
		if resp, ok := fn(); ok {
			n.reply(m, resp)
		}
	}()
}

func decodeRequest(m *nats.Msg) (*wire.Request, *wire.Error) {
	var req wire.Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return nil, &wire.Error{Type: "InvalidRequestContentException", Message: "placement request does not parse: " + err.Error()}
	}
	return &req, nil
}

// handleLeader serves the leader subject: the control plane, cold-start
// grants without a requester, snapshots. Worker operations are refused
// here: a worker's identity is the subject it publishes on.
func (n *Node) handleLeader(m *nats.Msg) {
	received := time.Now()
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, wire.Response{Error: perr})
		return
	}
	n.spawn(m, func() wire.Response { return n.serve(req, received) })
}

// handleWorkerOp serves cs.placement.worker.<id>.<op>: NATS permissions let
// only worker <id> publish there, so the id is taken from the subject.
func (n *Node) handleWorkerOp(m *nats.Msg) {
	id, op, ok := wire.ParseWorkerOpSubject(m.Subject)
	if !ok {
		n.reply(m, wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "bad worker subject " + m.Subject}})
		return
	}
	if op == wire.OpIdle {
		// A report from another incarnation than the ledger's (sent before
		// a pause and delivered after it) describes sandboxes that are void.
		var r wire.IdleReport
		if err := json.Unmarshal(m.Data, &r); err == nil {
			n.onIdleReport(id, r)
		}
		return
	}
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, wire.Response{Error: perr})
		return
	}
	if op == wire.OpRenew && req.Renew != nil {
		n.spawnMaybe(m, func() (wire.Response, bool) { return n.renew(id, *req.Renew) })
		return
	}
	n.spawn(m, func() wire.Response {
		switch {
		case op == wire.OpRelease:
			c := ReleaseSandboxes{IDs: req.Release, Worker: id, Incarnation: req.Incarnation}
			if _, err := n.apply(CmdReleaseSandboxes, c); err != nil {
				return wire.Response{Error: typedError(err)}
			}
			return wire.Response{}
		case op == wire.OpReconcile && req.Reconcile != nil:
			c := *req.Reconcile
			c.Worker = id
			return n.reconcile(c)
		}
		return wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "unknown worker op " + op}}
	})
}

// onIdleReport takes a worker's idle report into the reclaim view, unless
// it comes from another incarnation than the ledger's.
func (n *Node) onIdleReport(worker string, r wire.IdleReport) {
	current := false
	n.fsm.Read(func(l *Ledger) {
		w := l.s.Workers[worker]
		current = w != nil && w.Incarnation == r.Incarnation
	})
	if current {
		n.leases.setIdle(worker, r)
	}
}

// handleGatewayOp serves cs.placement.gateway.<id>.<op>: grants requested
// there remember their gateway, and only it may cancel them.
func (n *Node) handleGatewayOp(m *nats.Msg) {
	id, op, ok := wire.ParseGatewayOpSubject(m.Subject)
	if !ok {
		n.reply(m, wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "bad gateway subject " + m.Subject}})
		return
	}
	received := time.Now()
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, wire.Response{Error: perr})
		return
	}
	n.spawn(m, func() wire.Response {
		switch {
		case op == wire.OpCreateSandbox && req.Sandbox != nil:
			c := *req.Sandbox
			c.Requester, c.Provisioned = id, false
			c.Deadline = deadlineOf(received, req.BudgetNs)
			return n.createSandbox(c)
		case op == wire.OpCancel:
			v, err := n.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: req.Release, Now: time.Now().UnixNano(), Gateway: id})
			if err != nil {
				return wire.Response{Error: typedError(err)}
			}
			cancelled, _ := v.([]Sandbox)
			return wire.Response{Cancelled: cancelled}
		case op == wire.OpSuspect && req.Worker != "":
			// A hint: new grants avoid the worker for a while; only its
			// lease decides when its sandboxes are released.
			n.leases.suspect(req.Worker, time.Now())
			return wire.Response{}
		case op == wire.OpSnapshot:
			return wire.Response{Snapshot: n.Snapshot()}
		}
		return wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "unknown gateway op " + op}}
	})
}

// answerMargin is what a grant's answer needs after the decision: the
// commit's reply crossing NATS back to the caller. A decision that would
// leave less than this of the caller's budget is not made.
const answerMargin = 25 * time.Millisecond

// deadlineOf turns a request's budget into a deadline on this node's
// clock, counted from when the request arrived (the caller's send time
// is on another clock). Zero budget: no deadline.
func deadlineOf(received time.Time, budgetNs int64) time.Time {
	if budgetNs <= 0 {
		return time.Time{}
	}
	return received.Add(time.Duration(budgetNs) - answerMargin)
}

func (n *Node) serve(req *wire.Request, received time.Time) wire.Response {
	switch {
	case req.Op == wire.OpCreateSandbox && req.Sandbox != nil:
		c := *req.Sandbox
		c.Requester, c.Provisioned = "", false // only the provisioner pre-warms
		c.Deadline = deadlineOf(received, req.BudgetNs)
		return n.createSandbox(c)
	case req.Op == wire.OpCreateFunction && req.Function != nil:
		req.Function.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdCreateFunction, req.Function)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Function.Account, req.Function.Name, idx)
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpDeleteFunction && req.Delete != nil:
		v, idx, err := n.applyIndex(CmdDeleteFunction, req.Delete)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		if req.Delete.Qualifier != "" {
			n.publishDeploy(req.Delete.Account, req.Delete.Name, req.Delete.Qualifier, 0, idx)
			go n.provisionSoon()
		} else {
			n.publishEvent(wire.EventDelete, req.Delete.Account, req.Delete.Name, idx)
		}
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpUpdateFunction && req.Update != nil:
		req.Update.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdUpdateFunction, req.Update)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		f := v.(*Function)
		n.publishDeploy(f.Account, f.Name, "$LATEST", f.Rev(), idx)
		return wire.Response{Function: f, Index: idx}
	case req.Op == wire.OpPublishVersion && req.Publish != nil:
		req.Publish.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdPublishVersion, req.Publish)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Publish.Account, req.Publish.Name, idx)
		return wire.Response{Version: v.(*FunctionVersion), Index: idx}
	case req.Op == wire.OpPutAlias && req.Alias != nil:
		v, idx, err := n.applyIndex(CmdPutAlias, req.Alias)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Alias.Account, req.Alias.Function, idx)
		go n.provisionSoon() // an alias with provisioned concurrency moved
		return wire.Response{Alias: v.(*Alias), Index: idx}
	case req.Op == wire.OpDeleteAlias && req.DeleteAlias != nil:
		v, idx, err := n.applyIndex(CmdDeleteAlias, req.DeleteAlias)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.DeleteAlias.Account, req.DeleteAlias.Function, idx)
		go n.provisionSoon()
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpSetProvisioned && req.Provisioned != nil:
		req.Provisioned.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdSetProvisioned, req.Provisioned)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Provisioned.Account, req.Provisioned.Function, idx)
		go n.provisionSoon()
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpCreateAccount && req.NewAccount != nil:
		v, idx, err := n.applyIndex(CmdCreateAccount, req.NewAccount)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventAccount, req.NewAccount.ID, "", idx)
		return wire.Response{Account: v.(*Account), Index: idx}
	case req.Op == wire.OpPutEventConfig && req.EventConfig != nil:
		req.EventConfig.ModifiedNs = time.Now().UnixNano()
		v, idx, err := n.applyIndex(CmdPutEventConfig, req.EventConfig)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.EventConfig.Account, req.EventConfig.Function, idx)
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpSetOptions && req.Options != nil:
		if req.Options.Fault != nil {
			req.Options.Fault.SetNs = time.Now().UnixNano()
		}
		v, idx, err := n.applyIndex(CmdSetOptions, req.Options)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Options.Account, req.Options.Function, idx)
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpAddAccessKey && req.AddKey != nil:
		v, idx, err := n.applyIndex(CmdAddAccessKey, req.AddKey)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventAccount, req.AddKey.Account, "", idx)
		return wire.Response{Account: v.(*Account), Index: idx}
	case req.Op == wire.OpSetLimit && req.Limit != nil:
		v, idx, err := n.applyIndex(CmdSetAccountLimit, req.Limit)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventAccount, req.Limit.Account, "", idx)
		go n.trim(req.Limit.Account)
		return wire.Response{Account: v.(*Account), Index: idx}
	case req.Op == wire.OpSetReserved && req.Reserved != nil:
		v, idx, err := n.applyIndex(CmdSetReserved, req.Reserved)
		if err != nil {
			return wire.Response{Error: typedError(err)}
		}
		n.publishEvent(wire.EventFunction, req.Reserved.Account, req.Reserved.Name, idx)
		go n.trim(req.Reserved.Account)
		return wire.Response{Function: v.(*Function), Index: idx}
	case req.Op == wire.OpSnapshot:
		return wire.Response{Snapshot: n.Snapshot()}
	case req.Op == wire.OpSuspect:
		return wire.Response{} // a hint: leases decide
	case req.Op == wire.OpRelease || req.Op == wire.OpReconcile || req.Op == wire.OpRenew:
		return wire.Response{Error: &wire.Error{Type: "AccessDeniedException", Message: req.Op + " is a worker operation: send it on the worker's own subject"}}
	}
	return wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "unknown placement op " + req.Op}}
}

// publishDeploy tells workers that version of a function now has Spec
// revision rev (0: the version is gone): idle sandboxes of other revisions
// are dropped, and busy ones when their invocation ends.
func (n *Node) publishDeploy(account, name, version string, rev, idx uint64) {
	var cid string
	n.fsm.Read(func(l *Ledger) { cid = l.s.ClusterID })
	b, _ := json.Marshal(wire.Event{Kind: wire.EventDeploy, Account: account, Function: name, Index: idx, Term: termOf(n.raft), ClusterID: cid, Version: version, Revision: rev})
	_ = n.nc.Publish(wire.SubjectEvents, b)
}

func (n *Node) publishEvent(kind, account, name string, idx uint64) {
	var cid string
	n.fsm.Read(func(l *Ledger) { cid = l.s.ClusterID })
	b, _ := json.Marshal(wire.Event{Kind: kind, Account: account, Function: name, Index: idx, Term: termOf(n.raft), ClusterID: cid})
	_ = n.nc.Publish(wire.SubjectEvents, b)
}

func (n *Node) handleRead(m *nats.Msg) {
	var req wire.Request
	if err := json.Unmarshal(m.Data, &req); err != nil || req.Op != wire.OpSnapshot {
		n.reply(m, wire.Response{Error: &wire.Error{Type: "InvalidRequestContentException", Message: "placement read: want op snapshot"}})
		return
	}
	n.reply(m, wire.Response{Snapshot: n.Snapshot()})
}

// Snapshot returns this node's read view.
func (n *Node) Snapshot() *wire.Snapshot {
	s := &wire.Snapshot{Node: n.cfg.ID, Leader: n.LeaderID(), Term: termOf(n.raft), Counts: map[string]int{}, Accounted: map[string]int{}, Rate: n.cfg.Rate}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			st := "follower"
			if string(srv.ID) == s.Leader {
				st = "leader"
			}
			s.Peers = append(s.Peers, wire.PeerState{ID: string(srv.ID), Addr: string(srv.Address), State: st})
		}
	}
	n.fsm.Read(func(l *Ledger) {
		for _, a := range l.s.Accounts {
			cp := *a
			cp.Keys = slices.Clone(a.Keys)
			s.Accounts = append(s.Accounts, cp)
		}
		for k, f := range l.s.Functions {
			s.Functions = append(s.Functions, *f.Clone())
			s.Counts[k] = l.FunctionSandboxes(f.Account, f.Name)
		}
		for _, w := range l.s.Workers {
			s.Workers = append(s.Workers, *w)
		}
		for _, sb := range l.s.Sandboxes {
			s.Accounted[sb.Account] = l.AccountSandboxes(sb.Account)
			if sb.Provisioned && sb.Ready {
				if f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]; f != nil && f.Created == sb.Incarnation {
					if v := f.Version(sb.Version); v != nil && v.Created == sb.Revision {
						if s.Provisioned == nil {
							s.Provisioned = map[string]int{}
						}
						s.Provisioned[wire.FunctionKey(sb.Account, sb.Function)+"/"+sb.Version]++
					}
				}
			}
		}
		s.ClusterID = l.s.ClusterID
		s.Digest = l.Digest()
		s.Index = l.s.Applied
	})
	sort.Slice(s.Accounts, func(i, j int) bool { return s.Accounts[i].ID < s.Accounts[j].ID })
	sort.Slice(s.Functions, func(i, j int) bool {
		return wire.FunctionKey(s.Functions[i].Account, s.Functions[i].Name) < wire.FunctionKey(s.Functions[j].Account, s.Functions[j].Name)
	})
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })
	return s
}

func termOf(r *raft.Raft) uint64 {
	var t uint64
	fmt.Sscan(r.Stats()["term"], &t)
	return t
}
