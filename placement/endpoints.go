package placement

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
)

// DefaultMaxInFlight bounds the leader's concurrent requests. Raft applies
// are slow relative to NATS dispatch, so requests run concurrently (their
// proposals batch into one commit), but never without bound: past it the
// leader answers a retryable ServiceException at once.
const DefaultMaxInFlight = 512

var errBusy = &Error{Type: "ServiceException", Message: "placement is busy: retry"}

func (n *Node) reply(m *nats.Msg, resp Response) {
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
func (n *Node) spawn(m *nats.Msg, fn func() Response) {
	n.spawnMaybe(m, func() (Response, bool) { return fn(), true })
}

// spawnMaybe is spawn for a handler that may decide not to answer.
func (n *Node) spawnMaybe(m *nats.Msg, fn func() (Response, bool)) {
	select {
	case n.sem <- struct{}{}:
	default:
		n.reply(m, Response{Error: errBusy})
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

func decodeRequest(m *nats.Msg) (*Request, *Error) {
	var req Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return nil, &Error{Type: "InvalidRequestContentException", Message: "placement request does not parse: " + err.Error()}
	}
	return &req, nil
}

// handleLeader serves the leader subject: the control plane, cold-start
// grants without a requester, snapshots. Worker operations are refused
// here: a worker's identity is the subject it publishes on.
func (n *Node) handleLeader(m *nats.Msg) {
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, Response{Error: perr})
		return
	}
	n.spawn(m, func() Response { return n.serve(req) })
}

// subjectParts splits "cs.placement.<kind>.<id>.<op>".
func subjectParts(subj, kind string) (id, op string, ok bool) {
	p := strings.Split(subj, ".")
	if len(p) != 5 || p[0] != "cs" || p[1] != "placement" || p[2] != kind || p[3] == "" {
		return "", "", false
	}
	return p[3], p[4], true
}

// handleWorkerOp serves cs.placement.worker.<id>.<op>: NATS permissions let
// only worker <id> publish there, so the id is taken from the subject.
func (n *Node) handleWorkerOp(m *nats.Msg) {
	id, op, ok := subjectParts(m.Subject, "worker")
	if !ok {
		n.reply(m, Response{Error: &Error{Type: "InvalidRequestContentException", Message: "bad worker subject " + m.Subject}})
		return
	}
	if op == OpIdle {
		var r IdleReport
		if err := json.Unmarshal(m.Data, &r); err == nil {
			n.leases.setIdle(id, r)
		}
		return
	}
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, Response{Error: perr})
		return
	}
	if op == OpRenew && req.Renew != nil {
		n.spawnMaybe(m, func() (Response, bool) { return n.renew(id, *req.Renew) })
		return
	}
	n.spawn(m, func() Response {
		switch {
		case op == OpRelease:
			c := ReleaseSandboxes{IDs: req.Release, Worker: id, Incarnation: req.Incarnation}
			if _, err := n.apply(CmdReleaseSandboxes, c); err != nil {
				return Response{Error: typedError(err)}
			}
			return Response{}
		case op == OpReconcile && req.Reconcile != nil:
			c := *req.Reconcile
			c.Worker = id
			return n.reconcile(c)
		}
		return Response{Error: &Error{Type: "InvalidRequestContentException", Message: "unknown worker op " + op}}
	})
}

// handleGatewayOp serves cs.placement.gateway.<id>.<op>: grants requested
// there remember their gateway, and only it may cancel them.
func (n *Node) handleGatewayOp(m *nats.Msg) {
	id, op, ok := subjectParts(m.Subject, "gateway")
	if !ok {
		n.reply(m, Response{Error: &Error{Type: "InvalidRequestContentException", Message: "bad gateway subject " + m.Subject}})
		return
	}
	req, perr := decodeRequest(m)
	if perr != nil {
		n.reply(m, Response{Error: perr})
		return
	}
	n.spawn(m, func() Response {
		switch {
		case op == OpCreateSandbox && req.Sandbox != nil:
			c := *req.Sandbox
			c.Requester = id
			return n.createSandbox(c)
		case op == OpCancel:
			if _, err := n.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: req.Release, Now: time.Now().UnixNano(), Gateway: id}); err != nil {
				return Response{Error: typedError(err)}
			}
			return Response{}
		case op == OpSuspect && req.Worker != "":
			// A hint: new grants avoid the worker for a while; only its
			// lease decides when its sandboxes are released.
			n.leases.suspect(req.Worker, time.Now())
			return Response{}
		case op == OpSnapshot:
			return Response{Snapshot: n.Snapshot()}
		}
		return Response{Error: &Error{Type: "InvalidRequestContentException", Message: "unknown gateway op " + op}}
	})
}

func (n *Node) serve(req *Request) Response {
	switch {
	case req.Op == OpCreateSandbox && req.Sandbox != nil:
		c := *req.Sandbox
		c.Requester = ""
		return n.createSandbox(c)
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
	case req.Op == OpSnapshot:
		return Response{Snapshot: n.Snapshot()}
	case req.Op == OpSuspect:
		return Response{} // a hint: leases decide
	case req.Op == OpRelease || req.Op == OpReconcile || req.Op == OpRenew:
		return Response{Error: &Error{Type: "AccessDeniedException", Message: req.Op + " is a worker operation: send it on the worker's own subject"}}
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
	var cid string
	n.fsm.Read(func(l *Ledger) { cid = l.s.ClusterID })
	b, _ := json.Marshal(Event{Kind: kind, Account: account, Function: name, Index: idx, Term: termOf(n.raft), ClusterID: cid})
	_ = n.nc.Publish(SubjectEvents, b)
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
	s := &Snapshot{Node: n.cfg.ID, Leader: n.LeaderID(), Term: termOf(n.raft), Counts: map[string]int{}, Accounted: map[string]int{}, Rate: n.cfg.Rate}
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
		s.Index = l.s.Applied
	})
	sort.Slice(s.Accounts, func(i, j int) bool { return s.Accounts[i].ID < s.Accounts[j].ID })
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
