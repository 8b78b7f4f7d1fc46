package wire

import "github.com/coldstart-dev/coldstart/quota"

// Reclaim: the leader picks a victim from the workers' IdleReports, then
// asks its owner on WorkerSubject(worker, WorkerRetire) to retire it.

// IdleQuery asks a worker for its LRU idle sandbox of Account in Scope.
type IdleQuery struct {
	Account  string      `json:"account"`
	Function string      `json:"function"`
	Version  string      `json:"version,omitempty"` // never retire this function's own version for it
	Scope    quota.Scope `json:"scope"`
	Reserved []string    `json:"reserved,omitempty"` // the account's functions with reservations
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
// It also answers a DropRequest (OK: the request was understood).
type RetireAnswer struct {
	OK bool   `json:"ok"`
	ID string `json:"id,omitempty"`
	// Draining (a drop's answer) counts the sandboxes asked for that were
	// busy: they are dropped when their invocation ends, and run on until
	// then.
	Draining int `json:"draining,omitempty"`
}

// DropRequest asks a worker (WorkerSubject(worker, WorkerDrop)) to drop
// sandboxes above a lowered limit.
type DropRequest struct {
	IDs []string `json:"ids"`
}

// Stats is a worker's answer on WorkerSubject(worker, WorkerStats).
type Stats struct {
	Worker   string     `json:"worker"`
	Idle     int        `json:"idle"`
	Busy     int        `json:"busy"`
	InFlight int        `json:"in_flight"`
	Keys     []KeyStats `json:"keys"`
	// Processes is how many process sandboxes run; Limits the isolation
	// in force for them (worker/process.LimitsMode).
	Processes int    `json:"processes,omitempty"`
	Limits    string `json:"limits,omitempty"`
}

// KeyStats counts one function version's sandboxes on a worker.
type KeyStats struct {
	Account  string `json:"account"`
	Function string `json:"function"`
	Version  string `json:"version"`
	Idle     int    `json:"idle"`
	Total    int    `json:"total"`
}
