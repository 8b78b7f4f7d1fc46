package placement

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// classOf is what sandbox sb was admitted as.
func classOf(sb *Sandbox) quota.Class {
	return quota.Class{Account: sb.Account, Function: sb.Function, Incarnation: sb.Incarnation, Pool: sb.Pool}
}

// State is everything placement replicates. Counts are derived on load.
type State struct {
	// ClusterID is set once by the first leader (CmdSetClusterID).
	ClusterID string `json:"cluster_id,omitempty"`
	// Applied is the Raft index of the last entry applied.
	Applied   uint64                   `json:"applied,omitempty"`
	Accounts  map[string]*Account      `json:"accounts"`
	Functions map[string]*Function     `json:"functions"` // by FunctionKey
	Workers   map[string]*Worker       `json:"workers"`
	Sandboxes map[string]*Sandbox      `json:"sandboxes"`
	Buckets   map[string]*quota.Bucket `json:"buckets"` // scaling rate, by FunctionKey
	// Cancelled holds ids released before they were granted, with the time
	// of the release, so that a late grant is refused.
	Cancelled map[string]int64 `json:"cancelled,omitempty"`
}

// cancelTTL is how long a cancelled grant id is remembered.
const cancelTTL = int64(time.Minute)

// Errors the ledger returns; the service maps them to Lambda error types.
var (
	ErrNotFound   = errors.New("ResourceNotFoundException")
	ErrConflict   = errors.New("ResourceConflictException")
	ErrNoCapacity = errors.New("no worker has capacity")
	ErrInvalid    = quota.ErrInvalidParameter
)

// Ledger applies commands to State. It is deterministic: every replica that
// applies the same log reaches the same state, which is why time comes in
// the commands and never from a clock.
type Ledger struct {
	s        State
	rate     quota.Rate
	defLimit int
	acc      *quota.Accounting // admission counts, from the sandboxes' classes
	wkCount  map[string]int    // sandboxes per worker
	wkMem    map[string]int    // memory MB granted per worker
}

// NewLedger returns an empty ledger.
func NewLedger(rate quota.Rate, defaultLimit int) *Ledger {
	if defaultLimit <= 0 {
		defaultLimit = quota.DefaultAccountLimit
	}
	l := &Ledger{rate: rate, defLimit: defaultLimit}
	l.load(State{})
	return l
}

func (l *Ledger) load(s State) {
	if s.Accounts == nil {
		s.Accounts = map[string]*Account{}
	}
	if s.Functions == nil {
		s.Functions = map[string]*Function{}
	}
	if s.Workers == nil {
		s.Workers = map[string]*Worker{}
	}
	if s.Sandboxes == nil {
		s.Sandboxes = map[string]*Sandbox{}
	}
	if s.Buckets == nil {
		s.Buckets = map[string]*quota.Bucket{}
	}
	if s.Cancelled == nil {
		s.Cancelled = map[string]int64{}
	}
	l.s = s
	l.acc = quota.NewAccounting()
	l.wkCount = map[string]int{}
	l.wkMem = map[string]int{}
	for _, sb := range s.Sandboxes {
		l.count(sb, 1)
	}
}

// count adds (d=1) or removes (d=-1) a sandbox. It reads nothing but the
// sandbox: the configuration may have changed since its grant.
func (l *Ledger) count(sb *Sandbox, d int) {
	if d > 0 {
		l.acc.Add(classOf(sb))
	} else {
		l.acc.Remove(classOf(sb))
	}
	if l.wkCount[sb.Worker] += d; l.wkCount[sb.Worker] == 0 {
		delete(l.wkCount, sb.Worker)
	}
	if l.wkMem[sb.Worker] += d * sb.MemoryMB; l.wkMem[sb.Worker] == 0 {
		delete(l.wkMem, sb.Worker)
	}
}

// State returns the live state; callers must not modify it.
func (l *Ledger) State() *State { return &l.s }

// Limit returns an account's concurrency limit.
func (l *Ledger) Limit(account string) int {
	if a := l.s.Accounts[account]; a != nil {
		return a.Limit
	}
	return l.defLimit
}

func (l *Ledger) reservedTotal(account, except string) int {
	t := 0
	for k, f := range l.s.Functions {
		if f.Account == account && f.Reserved != nil && k != except {
			t += *f.Reserved
		}
	}
	return t
}

// Usage returns the quota view of an account and one of its functions.
// The function's current incarnation is the one asking; sandboxes of an
// earlier incarnation count against the account only.
func (l *Ledger) Usage(account, function string) (quota.Account, quota.Function) {
	var inc uint64
	var reserved *int
	if f := l.s.Functions[wire.FunctionKey(account, function)]; f != nil {
		inc, reserved = f.Created, f.Reserved
	}
	return l.acc.Usage(account, function, inc, l.Limit(account), l.reservedTotal(account, ""), reserved)
}

// AccountSandboxes is the number of sandboxes granted to an account.
func (l *Ledger) AccountSandboxes(account string) int { return l.acc.Sandboxes(account) }

// FunctionSandboxes is the number of sandboxes of a function's current
// incarnation.
func (l *Ledger) FunctionSandboxes(account, name string) int {
	if f := l.s.Functions[wire.FunctionKey(account, name)]; f != nil {
		return l.acc.Function(account, name, f.Created)
	}
	return 0
}

// Accounting exposes the incremental counts (read-only) for tests and the
// model checker.
func (l *Ledger) Accounting() *quota.Accounting { return l.acc }

// Recount rebuilds the counts from the sandboxes alone.
func (l *Ledger) Recount() *quota.Accounting {
	cs := make([]quota.Class, 0, len(l.s.Sandboxes))
	for _, sb := range l.s.Sandboxes {
		cs = append(cs, classOf(sb))
	}
	return quota.Recount(cs)
}

// Check runs the admission rule without changing anything; the leader uses
// it to decide whether to look for a victim before proposing.
func (l *Ledger) Check(account, function string) quota.Decision {
	a, fn := l.Usage(account, function)
	return quota.Admit(a, fn)
}

// AliveWorkers counts the workers placement may place sandboxes on.
func (l *Ledger) AliveWorkers() int {
	n := 0
	for _, w := range l.s.Workers {
		if w.Alive {
			n++
		}
	}
	return n
}

// WorkersWith returns the alive workers holding sandboxes of account,
// most-loaded first.
func (l *Ledger) WorkersWith(account string) []string {
	seen := map[string]int{}
	for _, sb := range l.s.Sandboxes {
		if sb.Account == account {
			seen[sb.Worker]++
		}
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool {
		if seen[out[i]] != seen[out[j]] {
			return seen[out[i]] > seen[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// Apply applies one decoded command at Raft index idx. Its result depends
// on nothing but the state and the command: no clock, no configuration of
// this node, no map iteration order.
func (l *Ledger) Apply(t CmdType, body []byte, idx uint64) (any, error) {
	if idx > l.s.Applied {
		l.s.Applied = idx
	}
	switch t {
	case CmdCreateFunction:
		var f Function
		if err := unmarshal(body, &f); err != nil {
			return nil, err
		}
		return l.createFunction(f, idx)
	case CmdDeleteFunction:
		var c DeleteFunction
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		if c.Qualifier != "" {
			return l.deleteVersion(c, idx)
		}
		return l.deleteFunction(c)
	case CmdUpdateFunction:
		var c UpdateFunction
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.updateFunction(c, idx)
	case CmdPublishVersion:
		var c PublishVersion
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.publishVersion(c, idx)
	case CmdPutAlias:
		var c PutAlias
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.putAlias(c, idx)
	case CmdDeleteAlias:
		var c DeleteAlias
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.deleteAlias(c, idx)
	case CmdSetProvisioned:
		var c SetProvisioned
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.setProvisioned(c, idx)
	case CmdSandboxReady:
		var c SandboxReady
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.sandboxReady(c), nil
	case CmdCreateAccount:
		var c CreateAccount
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.createAccount(c)
	case CmdAddAccessKey:
		var c AddAccessKey
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.addAccessKey(c)
	case CmdPutEventConfig:
		var c PutEventConfig
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.putEventConfig(c, idx)
	case CmdSetOptions:
		var c SetFunctionOptions
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.setFunctionOptions(c, idx)
	case CmdSetAccountLimit:
		var c SetAccountLimit
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.setLimit(c)
	case CmdSetReserved:
		var c SetReserved
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.setReserved(c, idx)
	case CmdRegisterWorker:
		var w Worker
		if err := unmarshal(body, &w); err != nil {
			return nil, err
		}
		return l.registerWorker(w, idx)
	case CmdWorkerDead:
		var c WorkerDead
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.workerDead(c), nil
	case CmdCreateSandbox:
		var c CreateSandbox
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.createSandbox(c), nil
	case CmdReleaseSandboxes:
		var c ReleaseSandboxes
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.releaseCmd(c), nil
	case CmdReconcileWorker:
		var c ReconcileWorker
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.reconcile(c), nil
	case CmdSetClusterID:
		var c SetClusterID
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		if l.s.ClusterID == "" && c.ID != "" {
			l.s.ClusterID = c.ID
		}
		return l.s.ClusterID, nil
	}
	if t&IgnoreUnknown != 0 {
		return nil, nil
	}
	return nil, fmt.Errorf("%w: type %d", ErrUnknownCommand, t)
}

func unmarshal(b []byte, v any) error {
	if err := jsonUnmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrUnknownCommand, err)
	}
	return nil
}

// validFunction repeats the gateway's checks: placement must not trust its
// callers (anything on NATS can reach the leader subject).
func validFunction(f Function) error {
	bad := func(msg string) error { return &quota.ValidationError{Message: msg} }
	if f.Account == "" {
		return bad("function without an account")
	}
	if len(f.Name) == 0 || len(f.Name) > 64 {
		return bad("function name must be 1 to 64 characters")
	}
	for _, r := range f.Name {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return bad("function name must match [a-zA-Z0-9-_]+")
		}
	}
	if f.MemoryMB < 128 || f.MemoryMB > 10240 {
		return bad("memory must be between 128 and 10240 MB")
	}
	if f.TimeoutMs < 1000 || f.TimeoutMs > 900000 {
		return bad("timeout must be between 1 and 900 seconds")
	}
	return nil
}

func (l *Ledger) createFunction(f Function, idx uint64) (*Function, error) {
	if err := validFunction(f); err != nil {
		return nil, err
	}
	k := wire.FunctionKey(f.Account, f.Name)
	if _, ok := l.s.Functions[k]; ok {
		return nil, fmt.Errorf("%w: Function already exist: %s", ErrConflict, f.Name)
	}
	if f.Reserved != nil {
		// The unreserved pool keeps its floor above the provisioned
		// concurrency of unreserved functions, too.
		if err := quota.CheckReserved(l.Limit(f.Account), l.reservedTotal(f.Account, k)+l.unreservedProvisioned(f.Account, k), *f.Reserved); err != nil {
			return nil, err
		}
	}
	if err := ValidEnvironment(f.Environment); err != nil {
		return nil, err
	}
	// A new function starts with no versions, aliases or provisioned
	// concurrency, whatever the request carried.
	f.Versions, f.Aliases, f.Provisioned, f.LastVersion = nil, nil, nil, 0
	f.EventConfigs, f.Idempotency, f.Fault = nil, nil, nil
	f.Revision, f.Created, f.ConfigRev = idx, idx, idx
	l.s.Functions[k] = f.Clone()
	return f.Clone(), nil
}

func (l *Ledger) deleteFunction(c DeleteFunction) (*Function, error) {
	k := wire.FunctionKey(c.Account, c.Name)
	f, ok := l.s.Functions[k]
	if !ok {
		return nil, fmt.Errorf("%w: Function not found: %s", ErrNotFound, c.Name)
	}
	// Its sandboxes stay counted, in the pool that admitted them, until
	// their workers release them: they may still be running, and in-flight
	// must stay under the limit.
	delete(l.s.Functions, k)
	delete(l.s.Buckets, k)
	return f.Clone(), nil
}

func (l *Ledger) setLimit(c SetAccountLimit) (*Account, error) {
	// Provisioned concurrency of unreserved functions is carved out of the
	// unreserved pool like a reservation.
	if err := quota.CheckLimit(c.Limit, l.reservedTotal(c.Account, "")+l.unreservedProvisioned(c.Account, "")); err != nil {
		return nil, err
	}
	a := &Account{ID: c.Account, Limit: c.Limit}
	if old := l.s.Accounts[c.Account]; old != nil {
		a.Keys, a.Created = old.Keys, old.Created
	}
	l.s.Accounts[c.Account] = a
	cp := *a
	cp.Keys = slices.Clone(a.Keys)
	return &cp, nil
}

func (l *Ledger) setReserved(c SetReserved, idx uint64) (*Function, error) {
	k := wire.FunctionKey(c.Account, c.Name)
	f, ok := l.s.Functions[k]
	if !ok {
		return nil, fmt.Errorf("%w: Function not found: %s", ErrNotFound, c.Name)
	}
	if c.Reserved != nil {
		if err := quota.CheckReserved(l.Limit(c.Account), l.reservedTotal(c.Account, k)+l.unreservedProvisioned(c.Account, k), *c.Reserved); err != nil {
			return nil, err
		}
		if pc := provisionedTotal(f, ""); *c.Reserved < pc {
			return nil, invalid("ReservedConcurrentExecutions %d is less than the function's provisioned concurrency %d", *c.Reserved, pc)
		}
	} else if pc := provisionedTotal(f, ""); pc > 0 {
		// Its provisioned concurrency moves to the unreserved pool.
		limit := l.Limit(c.Account)
		if free := limit - (l.reservedTotal(c.Account, k)) - l.unreservedProvisioned(c.Account, k) - quota.Minimum(limit); pc > free {
			return nil, invalid("Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [%d].", max(free, 0))
		}
	}
	// Live sandboxes keep the pool they were admitted under; the leader
	// trims what exceeds the new caps (Excess).
	f.Reserved = c.Reserved
	f.Revision = idx
	return f.Clone(), nil
}

// registerWorker records a worker joining or renewing its registration.
// A worker that presents its current incarnation only updates its size; any
// other (a fresh start, or one placement already gave up on) gets a new
// incarnation, and whatever the ledger still held on it is released: those
// sandboxes died with the process, or were handed back when it was declared
// dead.
func (l *Ledger) registerWorker(w Worker, idx uint64) (*Worker, error) {
	if w.ID == "" {
		return nil, &quota.ValidationError{Message: "worker without an id"}
	}
	if w.Capacity < 0 || w.MemoryMB < 0 {
		return nil, &quota.ValidationError{Message: "worker capacity and memory must not be negative"}
	}
	cur := l.s.Workers[w.ID]
	if cur != nil && cur.Alive && w.Incarnation != 0 && cur.Incarnation == w.Incarnation {
		cur.Capacity, cur.MemoryMB = w.Capacity, w.MemoryMB
		cp := *cur
		return &cp, nil
	}
	l.release(l.onWorker(w.ID), "")
	nw := &Worker{ID: w.ID, Capacity: w.Capacity, MemoryMB: w.MemoryMB, Alive: true, Incarnation: idx}
	l.s.Workers[w.ID] = nw
	cp := *nw
	return &cp, nil
}

func (l *Ledger) onWorker(id string) []string {
	var ids []string
	for sid, sb := range l.s.Sandboxes {
		if sb.Worker == id {
			ids = append(ids, sid)
		}
	}
	sort.Strings(ids)
	return ids
}

// workerDead releases a worker's sandboxes and forgets it. A verdict about
// an older incarnation than the current one is ignored: the worker has
// registered again since, with grants of its own.
func (l *Ledger) workerDead(c WorkerDead) []string {
	w := l.s.Workers[c.ID]
	if w != nil && c.Incarnation != 0 && w.Incarnation != c.Incarnation {
		return nil
	}
	done := l.release(l.onWorker(c.ID), "")
	delete(l.s.Workers, c.ID)
	return done
}

// release gives back the sandboxes named; with worker set, only those placed
// on that worker (a worker may release only its own).
func (l *Ledger) release(ids []string, worker string) []string {
	var done []string
	for _, id := range ids {
		sb, ok := l.s.Sandboxes[id]
		if !ok || (worker != "" && sb.Worker != worker) {
			continue
		}
		l.count(sb, -1)
		delete(l.s.Sandboxes, id)
		done = append(done, id)
	}
	return done
}

// releaseCmd applies a release: the ids released, or for a gateway's
// cancel the grants it released ([]Sandbox).
func (l *Ledger) releaseCmd(c ReleaseSandboxes) any {
	if c.Gateway != "" {
		// A gateway may cancel only its own grants, or tombstone ids not
		// granted yet so that its late request is refused.
		// The result is the released grants themselves (copies), for the
		// gateway's record of capacity held that nobody used.
		var own []string
		var cancelled []Sandbox
		for _, id := range c.IDs {
			if sb, ok := l.s.Sandboxes[id]; ok && sb.Requester == c.Gateway {
				own = append(own, id)
				cancelled = append(cancelled, *sb)
			}
		}
		l.release(own, "")
		l.cancel(c.IDs, c.Now)
		return cancelled
	}
	if c.Worker != "" && c.Incarnation != 0 {
		if w := l.s.Workers[c.Worker]; w == nil || w.Incarnation != c.Incarnation {
			return nil // its sandboxes were released with the old incarnation
		}
	}
	done := l.release(c.IDs, c.Worker)
	if c.Now != 0 && len(done) < len(c.IDs) {
		l.cancel(c.IDs, c.Now)
	}
	return done
}

// cancel remembers released ids that were never granted, and forgets
// those older than cancelTTL.
func (l *Ledger) cancel(ids []string, now int64) {
	for id, at := range l.s.Cancelled {
		if at < now-cancelTTL {
			delete(l.s.Cancelled, id)
		}
	}
	for _, id := range ids {
		if _, held := l.s.Sandboxes[id]; !held {
			l.s.Cancelled[id] = now
		}
	}
}

// Grant errors.
const (
	// ErrCancelled is the Grant.Err of a request whose id was cancelled.
	ErrCancelled = "grant cancelled by its requester"
	// ErrIDInUse is the Grant.Err of a request reusing another sandbox's id.
	ErrIDInUse = "sandbox id already used by another sandbox"
	// ErrStale is the Grant.Err of a worker request from an incarnation
	// placement has given up on.
	ErrStale = "stale worker incarnation: its sandboxes were released"
	// ErrProvisionedFull: a provisioned grant beyond what the version's
	// config requests.
	ErrProvisionedFull = "provisioned concurrency already allocated"
)

func (l *Ledger) createSandbox(c CreateSandbox) *Grant {
	// Victims named were retired by their workers for this request: they
	// are gone whatever the outcome, so they are released first, on every
	// path (a retried request included), and never stay counted. The
	// request's own id is never its own victim.
	for _, v := range c.Release {
		if v != c.ID {
			l.release([]string{v}, "")
		}
	}
	if sb, ok := l.s.Sandboxes[c.ID]; ok {
		if sb.Account != c.Account || sb.Function != c.Function || sb.Version != c.Version {
			return &Grant{Err: ErrIDInUse}
		}
		cp := *sb // a retried request: same answer, applied once
		return &Grant{Sandbox: &cp}
	}
	if _, gone := l.s.Cancelled[c.ID]; gone {
		return &Grant{Err: ErrCancelled}
	}
	if c.ID == "" {
		return &Grant{Err: "sandbox id missing"}
	}
	fk := wire.FunctionKey(c.Account, c.Function)
	f, ok := l.s.Functions[fk]
	if !ok {
		return &Grant{Err: ErrNotFound.Error()}
	}
	mem, rev := f.MemoryMB, f.Rev()
	if c.Version != "" && c.Version != "$LATEST" {
		v := f.Version(c.Version)
		if v == nil {
			return &Grant{Err: ErrNotFound.Error()}
		}
		mem, rev = v.MemoryMB, v.Created
	}
	if c.Provisioned && l.provisionedHeld(f, c.Version, rev) >= l.ProvisionedTarget(f)[c.Version] {
		// The provisioner asks again after a lost answer or a leader
		// change: never more than the config requests.
		return &Grant{Err: ErrProvisionedFull}
	}
	a, fn := l.Usage(c.Account, c.Function)
	d := quota.Admit(a, fn)
	if !d.Admit {
		return &Grant{Reason: d.Reason, Reclaim: d.Reclaim}
	}
	now := time.Duration(c.Now)
	b := l.s.Buckets[fk]
	if b == nil {
		nb := quota.NewBucket(l.rate, now)
		b = &nb
		l.s.Buckets[fk] = b
	}
	if !b.Available(l.rate, now) {
		return &Grant{Reason: quota.RateReason(fn)}
	}
	w := l.pickWorker(mem, c.Avoid)
	if w == "" {
		return &Grant{Err: ErrNoCapacity.Error()}
	}
	b.Take(l.rate, now)
	sb := &Sandbox{ID: c.ID, Account: c.Account, Function: c.Function, Version: c.Version,
		Incarnation: f.Created, Pool: quota.PoolFor(fn), Worker: w, WorkerInc: l.s.Workers[w].Incarnation,
		Requester: c.Requester, MemoryMB: mem, CreatedNs: c.Now, Revision: rev, Provisioned: c.Provisioned}
	l.s.Sandboxes[c.ID] = sb
	l.count(sb, 1)
	cp := *sb
	return &Grant{Sandbox: &cp}
}

// pickWorker spreads sandboxes: the alive worker with room and the fewest
// sandboxes, ties by id so every replica agrees. Workers in avoid are taken
// only when no other has room.
func (l *Ledger) pickWorker(memMB int, avoid []string) string {
	best, bestN, bestAvoided := "", 0, true
	for id, w := range l.s.Workers {
		if !w.Alive {
			continue
		}
		n := l.wkCount[id]
		if w.Capacity > 0 && n >= w.Capacity {
			continue
		}
		if w.MemoryMB > 0 && l.wkMem[id]+memMB > w.MemoryMB {
			continue
		}
		avoided := slices.Contains(avoid, id)
		better := best == "" ||
			(bestAvoided && !avoided) ||
			(avoided == bestAvoided && (n < bestN || (n == bestN && id < best)))
		if better {
			best, bestN, bestAvoided = id, n, avoided
		}
	}
	return best
}

func (l *Ledger) reconcile(c ReconcileWorker) *Grant {
	if w := l.s.Workers[c.Worker]; c.Incarnation != 0 && (w == nil || w.Incarnation != c.Incarnation) {
		return &Grant{Err: ErrStale}
	}
	present := make(map[string]bool, len(c.Present))
	g := &Grant{}
	for _, id := range c.Present {
		present[id] = true
		if sb, ok := l.s.Sandboxes[id]; !ok || sb.Worker != c.Worker {
			g.Dropped = append(g.Dropped, id)
		}
	}
	var stale []string
	for id, sb := range l.s.Sandboxes {
		if sb.Worker == c.Worker && !present[id] && sb.CreatedNs < c.Now-c.GraceNs {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	l.release(stale, "")
	return g
}

// NeedsReconcile reports whether a worker's report differs from the ledger
// (so the leader proposes only when something is wrong).
func (l *Ledger) NeedsReconcile(c ReconcileWorker) bool {
	if w := l.s.Workers[c.Worker]; c.Incarnation != 0 && (w == nil || w.Incarnation != c.Incarnation) {
		return true
	}
	present := make(map[string]bool, len(c.Present))
	for _, id := range c.Present {
		present[id] = true
		if sb, ok := l.s.Sandboxes[id]; !ok || sb.Worker != c.Worker {
			return true
		}
	}
	for id, sb := range l.s.Sandboxes {
		if sb.Worker == c.Worker && !present[id] && sb.CreatedNs < c.Now-c.GraceNs {
			return true
		}
	}
	return false
}

// OverCap returns, per worker, every sandbox of account in a group held
// above its current cap: a function's current incarnation above its
// reservation, the unreserved pool above what reservations leave, the
// account above its limit. Unlike Excess it names the whole group, kept
// sandboxes included (see Node.trim).
func (l *Ledger) OverCap(account string) map[string][]string {
	var all []*Sandbox
	perFn := map[string]int{}
	unres := 0
	for _, sb := range l.s.Sandboxes {
		if sb.Account != account {
			continue
		}
		all = append(all, sb)
		if f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]; f != nil && f.Reserved != nil && f.Created == sb.Incarnation {
			perFn[sb.Function]++
		}
		if sb.Pool == quota.PoolUnreserved {
			unres++
		}
	}
	limit := l.Limit(account)
	accountOver := len(all) > limit
	unresOver := unres > limit-l.reservedTotal(account, "")
	out := map[string][]string{}
	for _, sb := range all {
		f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]
		fnOver := f != nil && f.Reserved != nil && f.Created == sb.Incarnation && perFn[sb.Function] > *f.Reserved
		if accountOver || fnOver || (unresOver && sb.Pool == quota.PoolUnreserved) {
			out[sb.Worker] = append(out[sb.Worker], sb.ID)
		}
	}
	for w := range out {
		sort.Strings(out[w])
	}
	return out
}

// Excess returns, per worker, the sandboxes of account above its current
// caps, newest first so that long-warm sandboxes stay: per function
// incarnation above its reservation (any pool: a reservation caps them
// all), then the unreserved pool above what reservations leave, then the
// account above its limit. Sandboxes are judged by the pool that admitted
// them, like the counts.
func (l *Ledger) Excess(account string) map[string][]string {
	var all []*Sandbox
	for _, sb := range l.s.Sandboxes {
		if sb.Account == account {
			all = append(all, sb)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].CreatedNs != all[j].CreatedNs {
			return all[i].CreatedNs > all[j].CreatedNs
		}
		return all[i].ID < all[j].ID
	})
	dropped := map[string]bool{}
	out := map[string][]string{}
	drop := func(sb *Sandbox) {
		dropped[sb.ID] = true
		out[sb.Worker] = append(out[sb.Worker], sb.ID)
	}
	// Per function: sandboxes of its current incarnation above its
	// reservation.
	perFn := map[string]int{}
	for i := len(all) - 1; i >= 0; i-- { // oldest first: they are kept
		sb := all[i]
		f := l.s.Functions[wire.FunctionKey(sb.Account, sb.Function)]
		if f == nil || f.Reserved == nil || f.Created != sb.Incarnation {
			continue
		}
		if perFn[sb.Function]++; perFn[sb.Function] > *f.Reserved {
			drop(sb)
		}
	}
	limit := l.Limit(account)
	capU := limit - l.reservedTotal(account, "")
	unres, total := 0, 0
	for i := len(all) - 1; i >= 0; i-- {
		sb := all[i]
		if dropped[sb.ID] {
			continue
		}
		if sb.Pool == quota.PoolUnreserved {
			if unres++; unres > capU {
				drop(sb)
				continue
			}
		}
		if total++; total > limit {
			drop(sb)
		}
	}
	for w := range out {
		sort.Strings(out[w])
	}
	return out
}
