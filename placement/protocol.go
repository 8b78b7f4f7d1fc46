package placement

import (
	"encoding/json"

	"github.com/coldstart-dev/coldstart/quota"
)

// NATS subjects of the placement service.
const (
	// SubjectLeader is subscribed by the Raft leader only, so a request
	// reaches the leader or gets NATS "no responders" at once: the fast,
	// distinct failure when there is no quorum.
	SubjectLeader = "cs.placement.leader"
	// SubjectRead is served by every placement node (queue group): reads
	// from local, possibly stale, state keep working without a leader.
	SubjectRead = "cs.placement.read"
	// SubjectEvents carries change notices published by the leader.
	SubjectEvents = "cs.placement.events"
	// SubjectNodeRead + "." + id is one node's own read (no queue group),
	// for comparing replicas.
	SubjectNodeRead = "cs.placement.node"
	queueRead       = "placement"
)

// Per-node request subjects. A node's identity is the subject it publishes
// on, and NATS permissions (internal/natsutil) let a worker publish only on
// its own WorkerOpSubject and a gateway only on its own GatewayOpSubject, so
// placement takes the caller's id from the subject, never from the body.
// The leader subscribes "cs.placement.worker.*.*" and
// "cs.placement.gateway.*.*" while it leads.
const (
	SubjectWorkerOps  = "cs.placement.worker.*.*"
	SubjectGatewayOps = "cs.placement.gateway.*.*"
)

// WorkerOpSubject is where worker id sends op (release, reconcile, renew).
func WorkerOpSubject(id, op string) string { return "cs.placement.worker." + id + "." + op }

// GatewayOpSubject is where gateway id sends op (cancel).
func GatewayOpSubject(id, op string) string { return "cs.placement.gateway." + id + "." + op }

// Ops of a Request.
const (
	OpCreateFunction = "create_function"
	OpDeleteFunction = "delete_function"
	OpSetLimit       = "set_limit"
	OpSetReserved    = "set_reserved"
	OpCreateSandbox  = "create_sandbox"
	OpRelease        = "release"
	OpReconcile      = "reconcile"
	OpSuspect        = "suspect"  // a caller could not reach a worker
	OpSnapshot       = "snapshot" // read
	OpRenew          = "renew"    // a worker renews its lease (WorkerOpSubject)
	OpCancel         = "cancel"   // a gateway gives up on its own grant (GatewayOpSubject)
	OpIdle           = "idle"     // a worker's idle report (WorkerOpSubject, no reply)
)

// Request is the envelope of every placement request.
type Request struct {
	Op        string           `json:"op"`
	Function  *Function        `json:"function,omitempty"`
	Delete    *DeleteFunction  `json:"delete,omitempty"`
	Limit     *SetAccountLimit `json:"limit,omitempty"`
	Reserved  *SetReserved     `json:"reserved,omitempty"`
	Sandbox   *CreateSandbox   `json:"sandbox,omitempty"`
	Release   []string         `json:"release,omitempty"`
	Reconcile *ReconcileWorker `json:"reconcile,omitempty"`
	Worker    string           `json:"worker,omitempty"` // suspect
	Renew     *Renew           `json:"renew,omitempty"`
	// Incarnation is the sender's worker incarnation (release).
	Incarnation uint64 `json:"incarnation,omitempty"`
}

// Renew is a worker's lease renewal (on WorkerOpSubject(id, OpRenew)). It
// registers the worker when placement does not know this incarnation.
type Renew struct {
	Seq         uint64 `json:"seq"`
	Incarnation uint64 `json:"incarnation"` // 0: a fresh start
	Capacity    int    `json:"capacity"`
	MemoryMB    int    `json:"memory_mb"`
}

// Lease answers a Renew. The worker may start invocations until its own
// clock passes the time it sent the renewal plus TTL, and only while
// Incarnation is the one its sandboxes were granted under.
type Lease struct {
	Seq         uint64 `json:"seq"`
	Incarnation uint64 `json:"incarnation"`
	TTLNs       int64  `json:"ttl_ns"`
}

// IdleReport is a worker's view of its idle sandboxes, published (no
// reply) on WorkerOpSubject(id, OpIdle). The leader chooses reclaim
// victims from these reports instead of asking every worker on every
// throttle. A full report replaces the worker's whole view; otherwise only
// the keys listed are replaced (a worker reports a key at once when its
// idle count changes while it is low, the case a throttle decision hinges
// on).
type IdleReport struct {
	Incarnation uint64    `json:"incarnation"`
	Full        bool      `json:"full,omitempty"`
	Keys        []KeyIdle `json:"keys"`
}

// KeyIdle is one function version's idle sandboxes on a worker: the count,
// and the least recently used few.
type KeyIdle struct {
	Account  string      `json:"account"`
	Function string      `json:"function"`
	Version  string      `json:"version"`
	Count    int         `json:"count"`
	Idle     []IdleEntry `json:"idle,omitempty"`
}

// IdleEntry is one idle sandbox.
type IdleEntry struct {
	ID         string `json:"id"`
	Account    string `json:"account"`
	Function   string `json:"function"`
	Version    string `json:"version"`
	LastUsedNs int64  `json:"last_used_ns"`
}

// Error is a typed error in a Response; Type is the Lambda exception name.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Response is the envelope of every placement answer.
type Response struct {
	Error    *Error    `json:"error,omitempty"`
	Function *Function `json:"function,omitempty"`
	Account  *Account  `json:"account,omitempty"`
	Grant    *Grant    `json:"grant,omitempty"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Lease    *Lease    `json:"lease,omitempty"`
	Index    uint64    `json:"index,omitempty"` // Raft index of a committed write
}

// Snapshot is the read view gateways cache and status pages show.
type Snapshot struct {
	Node string `json:"node"`
	// ClusterID names the placement cluster (set once, in its log); a
	// gateway that sees it change resyncs from scratch.
	ClusterID string `json:"cluster_id,omitempty"`
	// Digest is a hash of the ledger state at Index: replicas that agree
	// report the same digest at the same applied index.
	Digest    string                     `json:"digest,omitempty"`
	Leader    string                     `json:"leader"`
	Term      uint64                     `json:"term"`
	Index     uint64                     `json:"index"`
	Peers     []PeerState                `json:"peers"`
	Accounts  []Account                  `json:"accounts"`
	Functions []Function                 `json:"functions"`
	Workers   []Worker                   `json:"workers"`
	Counts    map[string]int             `json:"counts"`    // sandboxes per function key
	Accounted map[string]int             `json:"accounted"` // sandboxes per account
	Rate      quota.Rate                 `json:"rate"`
	Extra     map[string]json.RawMessage `json:"extra,omitempty"`
}

// PeerState is one placement node as the answering node sees it.
type PeerState struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

// Reclaim protocol: the leader asks workers for their least recently used
// idle sandbox in a scope, then asks the owner of the best one to retire it.

// WorkerSubject is the subject prefix of a worker's control requests.
func WorkerSubject(worker, op string) string { return "cs.worker." + worker + "." + op }

// IdleQuery asks a worker for its LRU idle sandbox of Account in Scope.
type IdleQuery struct {
	Account  string      `json:"account"`
	Function string      `json:"function"`
	Version  string      `json:"version,omitempty"` // never retire this function's own version for it
	Scope    quota.Scope `json:"scope"`
	Reserved []string    `json:"reserved,omitempty"` // the account's functions with reservations
}

// IdleAnswer is a worker's candidate (ID empty when it has none).
type IdleAnswer struct {
	ID         string `json:"id,omitempty"`
	Function   string `json:"function,omitempty"`
	LastUsedNs int64  `json:"last_used_ns,omitempty"`
}

// RetireRequest asks a worker to retire the idle sandbox ID, or, when that
// one has been taken meanwhile (by an invocation or a concurrent reclaim),
// its least recently used idle sandbox matching Query. Concurrent cold starts
// racing for the same victims then still each find one.
type RetireRequest struct {
	ID    string    `json:"id"`
	Query IdleQuery `json:"query"`
}

// RetireAnswer names the sandbox retired; OK is false when none was idle.
type RetireAnswer struct {
	OK bool   `json:"ok"`
	ID string `json:"id,omitempty"`
}

// DropRequest asks a worker to drop sandboxes above a lowered limit.
type DropRequest struct {
	IDs []string `json:"ids"`
}
