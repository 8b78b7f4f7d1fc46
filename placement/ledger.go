package placement

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
)

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

// Sandbox is one granted execution environment.
type Sandbox struct {
	ID        string `json:"id"`
	Account   string `json:"account"`
	Function  string `json:"function"`
	Version   string `json:"version"`
	Worker    string `json:"worker"`
	MemoryMB  int    `json:"memory_mb"`
	CreatedNs int64  `json:"created_ns"`
}

// Worker is a worker node as placement knows it.
type Worker struct {
	ID       string `json:"id"`
	Capacity int    `json:"capacity"`
	MemoryMB int    `json:"memory_mb"`
	Alive    bool   `json:"alive"`
}

// Account holds an account's limit.
type Account struct {
	ID    string `json:"id"`
	Limit int    `json:"limit"`
}

// State is everything placement replicates. Counts are derived on load.
type State struct {
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

// FunctionKey is the map key of a function.
func FunctionKey(account, name string) string { return account + "/" + name }

// Errors the ledger returns; the service maps them to Lambda error types.
var (
	ErrNotFound   = errors.New("ResourceNotFoundException")
	ErrConflict   = errors.New("ResourceConflictException")
	ErrNoCapacity = errors.New("no worker has capacity")
	ErrInvalid    = quota.ErrInvalidParameter
)

// Grant is the answer to CreateSandbox: a sandbox, or a throttle.
type Grant struct {
	Sandbox *Sandbox     `json:"sandbox,omitempty"`
	Reason  quota.Reason `json:"reason,omitempty"`
	Reclaim quota.Scope  `json:"reclaim,omitempty"` // scope a victim may come from
	Err     string       `json:"err,omitempty"`
	Dropped []string     `json:"dropped,omitempty"` // reconcile: sandboxes the worker must drop
}

// Ledger applies commands to State. It is deterministic: every replica that
// applies the same log reaches the same state, which is why time comes in
// the commands and never from a clock.
type Ledger struct {
	s         State
	rate      quota.Rate
	defLimit  int
	acctCount map[string]int // sandboxes per account
	unresv    map[string]int // sandboxes of unreserved functions per account
	fnCount   map[string]int // sandboxes per function key
	wkCount   map[string]int // sandboxes per worker
	wkMem     map[string]int // memory MB granted per worker
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
	l.acctCount = map[string]int{}
	l.unresv = map[string]int{}
	l.fnCount = map[string]int{}
	l.wkCount = map[string]int{}
	l.wkMem = map[string]int{}
	for _, sb := range s.Sandboxes {
		l.count(sb, 1)
	}
}

func (l *Ledger) count(sb *Sandbox, d int) {
	fk := FunctionKey(sb.Account, sb.Function)
	l.acctCount[sb.Account] += d
	l.fnCount[fk] += d
	if f := l.s.Functions[fk]; f == nil || f.Reserved == nil {
		l.unresv[sb.Account] += d
	}
	l.wkCount[sb.Worker] += d
	l.wkMem[sb.Worker] += d * sb.MemoryMB
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
func (l *Ledger) Usage(account, function string) (quota.Account, quota.Function) {
	a := quota.Account{
		Limit:         l.Limit(account),
		ReservedTotal: l.reservedTotal(account, ""),
		Sandboxes:     l.acctCount[account],
		Unreserved:    l.unresv[account],
	}
	fk := FunctionKey(account, function)
	fn := quota.Function{Sandboxes: l.fnCount[fk]}
	if f := l.s.Functions[fk]; f != nil && f.Reserved != nil {
		fn.HasReserved, fn.Reserved = true, *f.Reserved
	}
	return a, fn
}

// AccountSandboxes and FunctionSandboxes are the granted counts.
func (l *Ledger) AccountSandboxes(account string) int { return l.acctCount[account] }
func (l *Ledger) FunctionSandboxes(account, name string) int {
	return l.fnCount[FunctionKey(account, name)]
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

// Apply applies one decoded command at Raft index idx.
func (l *Ledger) Apply(t CmdType, body []byte, idx uint64) (any, error) {
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
		return l.deleteFunction(c)
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
		w.Alive = true
		l.s.Workers[w.ID] = &w
		return nil, nil
	case CmdWorkerDead:
		var c WorkerDead
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.workerDead(c.ID), nil
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
		done := l.release(c.IDs)
		if c.Now != 0 && len(done) < len(c.IDs) {
			l.cancel(c.IDs, c.Now)
		}
		return done, nil
	case CmdReconcileWorker:
		var c ReconcileWorker
		if err := unmarshal(body, &c); err != nil {
			return nil, err
		}
		return l.reconcile(c), nil
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
	k := FunctionKey(f.Account, f.Name)
	if _, ok := l.s.Functions[k]; ok {
		return nil, fmt.Errorf("%w: Function already exist: %s", ErrConflict, f.Name)
	}
	if f.Reserved != nil {
		if err := quota.CheckReserved(l.Limit(f.Account), l.reservedTotal(f.Account, k), *f.Reserved); err != nil {
			return nil, err
		}
	}
	f.Revision, f.Created = idx, idx
	l.s.Functions[k] = &f
	cp := f
	return &cp, nil
}

func (l *Ledger) deleteFunction(c DeleteFunction) (*Function, error) {
	k := FunctionKey(c.Account, c.Name)
	f, ok := l.s.Functions[k]
	if !ok {
		return nil, fmt.Errorf("%w: Function not found: %s", ErrNotFound, c.Name)
	}
	// Its sandboxes stay counted until their workers release them: they may
	// still be running, and in-flight must stay under the limit.
	if f.Reserved != nil {
		// Without the function, its sandboxes count as unreserved until
		// released (count() can no longer see the reservation).
		l.moveReserved(c.Account, k, true)
	}
	delete(l.s.Functions, k)
	delete(l.s.Buckets, k)
	cp := *f
	return &cp, nil
}

// moveReserved moves a function's sandbox count in or out of the account's
// unreserved count when its reservation is set or removed.
func (l *Ledger) moveReserved(account, fk string, toUnreserved bool) {
	n := l.fnCount[fk]
	if toUnreserved {
		l.unresv[account] += n
	} else {
		l.unresv[account] -= n
	}
}

func (l *Ledger) setLimit(c SetAccountLimit) (*Account, error) {
	if err := quota.CheckLimit(c.Limit, l.reservedTotal(c.Account, "")); err != nil {
		return nil, err
	}
	a := &Account{ID: c.Account, Limit: c.Limit}
	l.s.Accounts[c.Account] = a
	cp := *a
	return &cp, nil
}

func (l *Ledger) setReserved(c SetReserved, idx uint64) (*Function, error) {
	k := FunctionKey(c.Account, c.Name)
	f, ok := l.s.Functions[k]
	if !ok {
		return nil, fmt.Errorf("%w: Function not found: %s", ErrNotFound, c.Name)
	}
	if c.Reserved != nil {
		if err := quota.CheckReserved(l.Limit(c.Account), l.reservedTotal(c.Account, k), *c.Reserved); err != nil {
			return nil, err
		}
	}
	switch {
	case f.Reserved == nil && c.Reserved != nil:
		l.moveReserved(c.Account, k, false)
	case f.Reserved != nil && c.Reserved == nil:
		l.moveReserved(c.Account, k, true)
	}
	f.Reserved = c.Reserved
	f.Revision = idx
	cp := *f
	return &cp, nil
}

func (l *Ledger) workerDead(id string) []string {
	if w := l.s.Workers[id]; w != nil {
		w.Alive = false
	}
	var ids []string
	for sid, sb := range l.s.Sandboxes {
		if sb.Worker == id {
			ids = append(ids, sid)
		}
	}
	sort.Strings(ids)
	return l.release(ids)
}

func (l *Ledger) release(ids []string) []string {
	var done []string
	for _, id := range ids {
		sb, ok := l.s.Sandboxes[id]
		if !ok {
			continue
		}
		l.count(sb, -1)
		delete(l.s.Sandboxes, id)
		done = append(done, id)
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

// ErrCancelled is the Grant.Err of a request whose id was cancelled.
const ErrCancelled = "grant cancelled by its requester"

func (l *Ledger) createSandbox(c CreateSandbox) *Grant {
	if sb, ok := l.s.Sandboxes[c.ID]; ok { // a retried request: same answer
		cp := *sb
		return &Grant{Sandbox: &cp}
	}
	l.release(c.Release)
	if _, gone := l.s.Cancelled[c.ID]; gone {
		return &Grant{Err: ErrCancelled}
	}
	fk := FunctionKey(c.Account, c.Function)
	f, ok := l.s.Functions[fk]
	if !ok {
		return &Grant{Err: ErrNotFound.Error()}
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
	w := l.pickWorker(f.MemoryMB)
	if w == "" {
		return &Grant{Err: ErrNoCapacity.Error()}
	}
	b.Take(l.rate, now)
	sb := &Sandbox{ID: c.ID, Account: c.Account, Function: c.Function, Version: c.Version, Worker: w, MemoryMB: f.MemoryMB, CreatedNs: c.Now}
	l.s.Sandboxes[c.ID] = sb
	l.count(sb, 1)
	cp := *sb
	return &Grant{Sandbox: &cp}
}

// pickWorker spreads sandboxes: the alive worker with room and the fewest
// sandboxes, ties by id so every replica agrees.
func (l *Ledger) pickWorker(memMB int) string {
	best, bestN := "", 0
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
		if best == "" || n < bestN || (n == bestN && id < best) {
			best, bestN = id, n
		}
	}
	return best
}

func (l *Ledger) reconcile(c ReconcileWorker) *Grant {
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
	l.release(stale)
	if w := l.s.Workers[c.Worker]; w != nil {
		w.Alive = true
	}
	return g
}

// NeedsReconcile reports whether a worker's report differs from the ledger
// (so the leader proposes only when something is wrong).
func (l *Ledger) NeedsReconcile(c ReconcileWorker) bool {
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
	if w := l.s.Workers[c.Worker]; w == nil || !w.Alive {
		return true
	}
	return false
}

// Excess returns, per worker, the sandboxes of account above its current
// caps (reserved concurrency per function, then the unreserved pool and the
// account limit), newest first so that long-warm sandboxes stay.
func (l *Ledger) Excess(account string) map[string][]string {
	byFn := map[string][]*Sandbox{}
	var unreserved []*Sandbox
	for _, sb := range l.s.Sandboxes {
		if sb.Account != account {
			continue
		}
		fk := FunctionKey(sb.Account, sb.Function)
		if f := l.s.Functions[fk]; f != nil && f.Reserved != nil {
			byFn[fk] = append(byFn[fk], sb)
		} else {
			unreserved = append(unreserved, sb)
		}
	}
	newest := func(s []*Sandbox) {
		sort.Slice(s, func(i, j int) bool {
			if s[i].CreatedNs != s[j].CreatedNs {
				return s[i].CreatedNs > s[j].CreatedNs
			}
			return s[i].ID < s[j].ID
		})
	}
	out := map[string][]string{}
	drop := func(s []*Sandbox, n int) {
		newest(s)
		for i := 0; i < n && i < len(s); i++ {
			out[s[i].Worker] = append(out[s[i].Worker], s[i].ID)
		}
	}
	reservedHeld := 0
	for fk, s := range byFn {
		r := *l.s.Functions[fk].Reserved
		if len(s) > r {
			drop(s, len(s)-r)
			reservedHeld += r
		} else {
			reservedHeld += len(s)
		}
	}
	limit := l.Limit(account)
	capU := limit - l.reservedTotal(account, "")
	if room := limit - reservedHeld; room < capU {
		capU = room
	}
	if capU < 0 {
		capU = 0
	}
	if len(unreserved) > capU {
		drop(unreserved, len(unreserved)-capU)
	}
	return out
}
