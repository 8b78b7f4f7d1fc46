package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

// ErrUnavailable means no placement leader answered: no quorum, or every
// placement node is down. Callers answer ServiceException, never 429.
var ErrUnavailable = errors.New("placement unavailable")

// ErrNoLeader is the ErrUnavailable that NATS itself reports: nothing
// subscribes the leader's subjects, so no placement node serves as leader.
var ErrNoLeader = fmt.Errorf("%w: no placement leader (Raft has no quorum)", ErrUnavailable)

// Request is the envelope of every placement request.
type Request struct {
	Op          string              `json:"op"`
	Function    *Function           `json:"function,omitempty"`
	Delete      *DeleteFunction     `json:"delete,omitempty"`
	Limit       *SetAccountLimit    `json:"limit,omitempty"`
	Reserved    *SetReserved        `json:"reserved,omitempty"`
	Sandbox     *CreateSandbox      `json:"sandbox,omitempty"`
	Release     []string            `json:"release,omitempty"`
	Reconcile   *ReconcileWorker    `json:"reconcile,omitempty"`
	Worker      string              `json:"worker,omitempty"` // suspect
	Renew       *Renew              `json:"renew,omitempty"`
	Update      *UpdateFunction     `json:"update,omitempty"`
	Publish     *PublishVersion     `json:"publish,omitempty"`
	Alias       *PutAlias           `json:"alias,omitempty"`
	DeleteAlias *DeleteAlias        `json:"delete_alias,omitempty"`
	Provisioned *SetProvisioned     `json:"provisioned,omitempty"`
	NewAccount  *CreateAccount      `json:"new_account,omitempty"`
	AddKey      *AddAccessKey       `json:"add_key,omitempty"`
	EventConfig *PutEventConfig     `json:"event_config,omitempty"`
	Options     *SetFunctionOptions `json:"options,omitempty"`
	// Incarnation is the sender's worker incarnation (release).
	Incarnation uint64 `json:"incarnation,omitempty"`
	// BudgetNs is how long the sender waits for the answer, counted from
	// when it sent the request (0: not said). Placement grants nothing it
	// could not answer in time: a grant committed after its caller gave up
	// would hold capacity that nobody uses until the caller's cancel.
	BudgetNs int64 `json:"budget_ns,omitempty"`
}

// Error is a typed error in a Response; Type is the Lambda exception name.
// Type "ServiceException" is retryable: a client reports it as
// ErrUnavailable.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Response is the envelope of every placement answer.
type Response struct {
	Error    *Error           `json:"error,omitempty"`
	Function *Function        `json:"function,omitempty"`
	Account  *Account         `json:"account,omitempty"`
	Grant    *Grant           `json:"grant,omitempty"`
	Version  *FunctionVersion `json:"version,omitempty"`
	Alias    *Alias           `json:"alias,omitempty"`
	Snapshot *Snapshot        `json:"snapshot,omitempty"`
	Lease    *Lease           `json:"lease,omitempty"`
	Index    uint64           `json:"index,omitempty"` // Raft index of a committed write
	// Cancelled are the grants a gateway's cancel released: sandboxes
	// placement granted that no invocation ran in (the caller gave up).
	Cancelled []Sandbox `json:"cancelled,omitempty"`
}

// Snapshot is the read view gateways cache and status pages show.
type Snapshot struct {
	Node string `json:"node"`
	// ClusterID names the placement cluster (set once, in its log); a
	// gateway that sees it change resyncs from scratch.
	ClusterID string `json:"cluster_id,omitempty"`
	// Digest is a hash of the ledger state at Index: replicas that agree
	// report the same digest at the same applied index.
	Digest    string         `json:"digest,omitempty"`
	Leader    string         `json:"leader"`
	Term      uint64         `json:"term"`
	Index     uint64         `json:"index"`
	Peers     []PeerState    `json:"peers"`
	Accounts  []Account      `json:"accounts"`
	Functions []Function     `json:"functions"`
	Workers   []Worker       `json:"workers"`
	Counts    map[string]int `json:"counts"`    // sandboxes per FunctionKey
	Accounted map[string]int `json:"accounted"` // sandboxes per account
	Rate      quota.Rate     `json:"rate"`
	// Provisioned counts the ready provisioned sandboxes of each
	// "account/function/version" at the version's current revision.
	Provisioned map[string]int             `json:"provisioned,omitempty"`
	Extra       map[string]json.RawMessage `json:"extra,omitempty"`
}

// PeerState is one placement node as the answering node sees it.
type PeerState struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	State string `json:"state"`
}

// Event is a change notice on SubjectEvents. Index is the Raft index of
// the change, so a reader can ignore snapshots older than it.
type Event struct {
	Kind      string `json:"kind"` // Event* below
	Account   string `json:"account"`
	Function  string `json:"function"`
	Index     uint64 `json:"index"`
	Term      uint64 `json:"term,omitempty"`
	ClusterID string `json:"cluster_id,omitempty"`
	Version   string `json:"version,omitempty"`  // deploy: the version concerned
	Revision  uint64 `json:"revision,omitempty"` // deploy: its current Spec revision (0: deleted)
}

// Kinds of Event.
const (
	EventFunction = "function" // created, or its reservation changed
	EventDelete   = "delete"   // deleted: workers drop its sandboxes
	EventAccount  = "account"  // the account's limit changed (Function empty)
	// EventDeploy: $LATEST's code or configuration changed (Revision is
	// its new Spec revision), or a version was deleted: workers drop idle
	// sandboxes of older revisions.
	EventDeploy = "deploy"
)

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

// DefaultLeaseTTL is the lease TTL placement grants unless configured
// otherwise. A worker learns the TTL from every Lease, but must choose how
// often to renew before it has one.
const DefaultLeaseTTL = 1500 * time.Millisecond

// RenewEvery is how often a worker renews a lease of ttl: four times per
// TTL, so a lease survives three lost renewals in a row.
func RenewEvery(ttl time.Duration) time.Duration { return ttl / 4 }

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
