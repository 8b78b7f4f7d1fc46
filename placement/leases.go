package placement

import (
	"sort"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/wire"
)

// Worker leases. A worker may start an invocation, warm or cold, only while
// it holds a lease: until its own monotonic clock passes the instant it
// *sent* its last successful renewal plus TTL, and only while its NATS
// connection is up. The leader releases a worker's sandboxes only when it
// has not answered a renewal from it for TTL + Margin, and the release
// bumps the worker's incarnation, so an answer computed before can never
// extend a lease the worker has lost. The timing argument is in DESIGN.md.

// LeaseTiming is the lease TTL and the margin placement adds before it
// gives a silent worker's capacity away.
type LeaseTiming struct {
	TTL    time.Duration
	Margin time.Duration
}

// DefaultLease renews four times per TTL (wire.RenewEvery), so a lease
// survives three lost renewals in a row; the margin covers clock-rate
// differences between hosts and the renewal's transit. TTL + margin is how
// long a dead worker's capacity stays counted: 1.8 s after its last
// renewal, inside the 2 s that quality.md allows for a worker kill.
var DefaultLease = LeaseTiming{TTL: wire.DefaultLeaseTTL, Margin: 300 * time.Millisecond}

// RenewEvery is how often a worker renews a lease of this timing.
func (t LeaseTiming) RenewEvery() time.Duration { return wire.RenewEvery(t.TTL) }

// Expiry is how long the leader waits after the last renewal it answered
// before it releases the worker.
func (t LeaseTiming) Expiry() time.Duration { return t.TTL + t.Margin }

// leaseTable is the leader's volatile view: when it last answered each
// worker, and each worker's idle sandboxes. A new leader starts it empty
// and counts every worker as renewed at the moment it took over, which is
// later than any renewal an earlier leader answered.
type leaseTable struct {
	mu    sync.Mutex
	since time.Time
	last  map[string]time.Time
	idle  map[string]map[string]wire.KeyIdle // worker -> key -> its idle sandboxes
	// suspects are workers a gateway could not reach or gossip reported
	// gone: new grants avoid them until they renew again.
	suspects map[string]time.Time
	// empty is when a probe of a worker for an account's idle sandboxes
	// last found none ("worker/account"); probing the probe in flight.
	empty   map[string]time.Time
	probing map[string]*probeCall
}

// probeQuiet is how long a worker that had no idle sandbox of an account is
// not asked again.
const probeQuiet = 2 * time.Millisecond

// probeCall is one probe of a worker for an account's idle sandboxes.
// Concurrent reclaims share it instead of each asking: a worker serves its
// retire requests one after another, and under overload a queue of
// identical probes made each of them, and every reclaim behind them,
// wait for the ones before (130 ms per probe was measured under -race).
type probeCall struct {
	done  chan struct{}
	found bool // the worker retired one (for the caller that made the probe)
}

// beginProbe returns the probe of worker for account to wait for, and
// whether the caller is to make it itself. It returns nil when the worker
// had none a moment ago (probeQuiet).
func (t *leaseTable) beginProbe(worker, account string, now time.Time) (call *probeCall, mine bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := worker + "/" + account
	if c := t.probing[key]; c != nil {
		return c, false
	}
	if now.Sub(t.empty[key]) < probeQuiet {
		return nil, false
	}
	if t.probing == nil {
		t.probing = map[string]*probeCall{}
	}
	c := &probeCall{done: make(chan struct{})}
	t.probing[key] = c
	return c, true
}

// endProbe records the outcome of a probe begun with beginProbe (found: the
// worker retired one; empty: it answered it had none) and wakes those
// waiting for it.
func (t *leaseTable) endProbe(worker, account string, c *probeCall, found, empty bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := worker + "/" + account
	if empty {
		if t.empty == nil {
			t.empty = map[string]time.Time{}
		}
		t.empty[key] = now
	}
	if t.probing[key] == c {
		delete(t.probing, key)
	}
	c.found = found
	close(c.done)
}

func newLeaseTable() *leaseTable {
	return &leaseTable{last: map[string]time.Time{}, idle: map[string]map[string]wire.KeyIdle{}, suspects: map[string]time.Time{}}
}

func (t *leaseTable) suspect(worker string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.suspects[worker] = now
}

// avoid lists, of the workers given, those new grants should not go to:
// suspects that have not renewed since, workers that have not renewed with
// this leader yet (they may be a previous run's, not started again), and
// workers silent for more than two renewal periods.
func (t *leaseTable) avoid(now time.Time, renewEvery time.Duration, workers []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, w := range workers {
		last, renewed := t.last[w]
		at, suspect := t.suspects[w]
		switch {
		case suspect && !last.After(at):
			out = append(out, w)
		case !renewed:
			out = append(out, w)
		case now.Sub(last) > 2*renewEvery:
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}

// reset starts the table for a new term of leadership.
func (t *leaseTable) reset(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.since = now
	t.last = map[string]time.Time{}
	t.idle = map[string]map[string]wire.KeyIdle{}
	t.suspects = map[string]time.Time{}
}

func (t *leaseTable) renewed(worker string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at.After(t.last[worker]) {
		t.last[worker] = at
	}
}

// silentFor is how long the worker has gone without an answered renewal.
func (t *leaseTable) silentFor(worker string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	last := t.last[worker]
	if last.Before(t.since) {
		last = t.since
	}
	return now.Sub(last)
}

// leased counts the workers that renewed within the TTL.
func (t *leaseTable) leased(now time.Time, ttl time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, at := range t.last {
		if now.Sub(at) < ttl {
			n++
		}
	}
	return n
}

func (t *leaseTable) forget(worker string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.last, worker)
	delete(t.idle, worker)
}

func keyOfIdle(k wire.KeyIdle) string { return k.Account + "/" + k.Function + "/" + k.Version }

func (t *leaseTable) setIdle(worker string, r wire.IdleReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.idle[worker]
	if m == nil || r.Full {
		m = map[string]wire.KeyIdle{}
		t.idle[worker] = m
	}
	for _, k := range r.Keys {
		if k.Count <= 0 {
			delete(m, keyOfIdle(k))
			continue
		}
		m[keyOfIdle(k)] = k
	}
}

// idleOf returns the idle sandboxes of account the workers last reported,
// with their owners, and the workers that reported more idle sandboxes of
// it than they listed (most first).
func (t *leaseTable) idleOf(account string) ([]wire.IdleEntry, map[string]string, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []wire.IdleEntry
	owner := map[string]string{}
	extra := map[string]int{}
	for w, keys := range t.idle {
		for _, k := range keys {
			if k.Account != account {
				continue
			}
			for _, e := range k.Idle {
				out = append(out, e)
				owner[e.ID] = w
			}
			if n := k.Count - len(k.Idle); n > 0 {
				extra[w] += n
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	more := make([]string, 0, len(extra))
	for w := range extra {
		more = append(more, w)
	}
	sort.Slice(more, func(i, j int) bool {
		if extra[more[i]] != extra[more[j]] {
			return extra[more[i]] > extra[more[j]]
		}
		return more[i] < more[j]
	})
	return out, owner, more
}

// takeIdle removes a sandbox from a worker's reported view (it is being
// retired, or was found busy): the entry id, or one unlisted of account
// when id is "".
func (t *leaseTable) takeIdle(worker, account, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, k := range t.idle[worker] {
		if k.Account != account {
			continue
		}
		if id == "" {
			if k.Count > len(k.Idle) {
				k.Count--
				t.idle[worker][key] = k
				return
			}
			continue
		}
		for i, e := range k.Idle {
			if e.ID == id {
				k.Idle = append(k.Idle[:i:i], k.Idle[i+1:]...)
				k.Count--
				t.idle[worker][key] = k
				return
			}
		}
	}
}
