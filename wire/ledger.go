package wire

import "github.com/coldstart-dev/coldstart/quota"

// Values of placement's ledger that messages carry. They are also entries
// of its Raft log and snapshots (see the package doc): placement names
// them through aliases.

// Function is a function's replicated configuration.
type Function struct {
	Account   string `json:"account"`
	Name      string `json:"name"`
	Runtime   string `json:"runtime"`
	MemoryMB  int    `json:"memory_mb"`
	TimeoutMs int64  `json:"timeout_ms"`
	Reserved  *int   `json:"reserved,omitempty"`
	// Synthetic is the synthetic runtime's configuration, kept as the user
	// gave it (api.SyntheticConfig as JSON) and parsed where it is used.
	Synthetic []byte `json:"synthetic,omitempty"`
	Revision  uint64 `json:"revision"` // Raft index of the last change
	// Created is the Raft index of the create: a function deleted and
	// created again under its name is a different function, and sandboxes
	// of the old one must never serve it.
	Created    uint64 `json:"created"`
	ModifiedNs int64  `json:"modified_ns"`
}

// Sandbox is one granted execution environment. Everything it was
// admitted as (account, function incarnation, pool) is recorded at the grant
// and never changes: the counts are derived from these fields alone.
type Sandbox struct {
	ID       string `json:"id"`
	Account  string `json:"account"`
	Function string `json:"function"`
	Version  string `json:"version"`
	// Incarnation is the Created index of the function it was granted for.
	Incarnation uint64     `json:"incarnation"`
	Pool        quota.Pool `json:"pool"`
	Worker      string     `json:"worker"`
	// WorkerInc is the worker's incarnation at the grant: a worker that
	// restarted or lost its lease meanwhile must not start it.
	WorkerInc uint64 `json:"worker_inc"`
	// Requester is the gateway whose request made the grant ("" when the
	// request did not come through a gateway's own subject): only it may
	// cancel the grant.
	Requester string `json:"requester,omitempty"`
	MemoryMB  int    `json:"memory_mb"`
	CreatedNs int64  `json:"created_ns"`
}

// Worker is a worker node as placement knows it. Incarnation is the Raft
// index of its registration: it changes whenever placement gives up on the
// worker's sandboxes, so an answer or a grant from an older incarnation is
// recognisably stale.
type Worker struct {
	ID          string `json:"id"`
	Capacity    int    `json:"capacity"`
	MemoryMB    int    `json:"memory_mb"`
	Alive       bool   `json:"alive"`
	Incarnation uint64 `json:"incarnation"`
}

// Account holds an account's limit.
type Account struct {
	ID    string `json:"id"`
	Limit int    `json:"limit"`
}

// FunctionKey is the map key of a function, in placement's state and in
// Snapshot.Counts.
func FunctionKey(account, name string) string { return account + "/" + name }

// Grant is the answer to CreateSandbox: a sandbox, or a throttle.
type Grant struct {
	Sandbox *Sandbox     `json:"sandbox,omitempty"`
	Reason  quota.Reason `json:"reason,omitempty"`
	Reclaim quota.Scope  `json:"reclaim,omitempty"` // scope a victim may come from
	Err     string       `json:"err,omitempty"`
	Dropped []string     `json:"dropped,omitempty"` // reconcile: sandboxes the worker must drop
	// Warm tells the caller that an idle sandbox of the very function and
	// version asking exists: it must take the warm path, not a new sandbox.
	Warm bool `json:"warm,omitempty"`
	// Token is placement's signature over the grant (GrantToken), checked
	// by the worker before it creates the sandbox.
	Token string `json:"token,omitempty"`
}

// Request bodies placement commits to its log as they are (after setting
// the fields the leader owns).

// DeleteFunction deletes a function (OpDeleteFunction).
type DeleteFunction struct {
	Account string `json:"account"`
	Name    string `json:"name"`
}

// SetAccountLimit sets an account's concurrency limit (OpSetLimit).
type SetAccountLimit struct {
	Account string `json:"account"`
	Limit   int    `json:"limit"`
}

// SetReserved sets or deletes a function's reserved concurrency (OpSetReserved).
type SetReserved struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Reserved *int   `json:"reserved"` // nil deletes the reservation
}

// CreateSandbox asks for one more sandbox. ID is chosen by the requester so
// that a retried request is applied once. Release lists idle sandboxes a
// worker has already retired to make room (they are released first,
// whatever the outcome).
type CreateSandbox struct {
	ID       string   `json:"id"`
	Account  string   `json:"account"`
	Function string   `json:"function"`
	Version  string   `json:"version"`
	Now      int64    `json:"now"` // leader's Unix ns, for the scaling-rate bucket
	Release  []string `json:"release,omitempty"`
	// Requester is the gateway that asked, taken by the leader from the
	// subject the request came on (never from a caller's body).
	Requester string `json:"requester,omitempty"`
	// Avoid lists workers the leader suspects (unreachable, silent): the
	// grant goes elsewhere when another worker has room. It is part of the
	// command, so every replica picks the same worker.
	Avoid []string `json:"avoid,omitempty"`
}

// ReconcileWorker carries the sandboxes a worker actually holds. Sandboxes the
// ledger places on it that it does not hold and that are older than Grace are
// released (their grant was never used); sandboxes it holds that the ledger
// does not know are returned for the worker to drop.
type ReconcileWorker struct {
	Worker      string   `json:"worker"`
	Incarnation uint64   `json:"incarnation,omitempty"`
	Present     []string `json:"present"`
	Now         int64    `json:"now"`
	GraceNs     int64    `json:"grace_ns"`
}
