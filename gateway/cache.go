package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// fnEntry is a cached function with everything the invoke path needs
// precomputed.
type fnEntry struct {
	fn   wire.Function
	spec string // wire.Spec, encoded once per revision (cold starts)
	rev  string // the Spec's revision (warm requests)
	cfg  *api.SyntheticConfig
	// versions holds each published version's encoded Spec.
	versions map[string]verEntry
}

// verEntry is a published version's precomputed invoke data.
type verEntry struct {
	spec, rev string
	timeoutMs int64
	code      string
}

// Reader is what the cache needs from placement: a read that works without
// a leader (static stability: the gateway keeps serving what it knows).
type Reader interface {
	Read(ctx context.Context) (*wire.Snapshot, error)
	ReadLeader(ctx context.Context) (*wire.Snapshot, error)
}

// The cache installs a placement snapshot only if it is not older than what
// it already holds, so a lagging follower cannot undo a newer view. Nothing
// from outside can hold it back for long: events are hints to refresh and
// never move its position, a write this gateway made holds older snapshots
// off for ownWriteHold only, and after staleRefusals refusals (or staleFor)
// the leader's snapshot is installed whatever its index (a placement
// cluster bootstrapped again starts from low indexes).
const (
	ownWriteHold  = 5 * time.Second
	staleRefusals = 3
	staleFor      = 5 * time.Second
)

type cache struct {
	r   Reader
	now func() time.Time
	mu  sync.RWMutex
	fn  map[string]*fnEntry
	sn  *wire.Snapshot
	at  time.Time
	// limits holds each account's concurrency limit from sn (accounts
	// absent from it have quota.DefaultAccountLimit).
	limits map[string]int
	// cluster is the placement cluster's id ("" until a snapshot names
	// one); term and index are the installed snapshot's position in its
	// log.
	cluster     string
	term, index uint64
	// own is the highest Raft index of a write this gateway made, as of
	// ownAt: snapshots older than it are refused until ownWriteHold.
	own   uint64
	ownAt time.Time
	// refused counts snapshots refused as stale since the last install,
	// the first of them at refusedAt.
	refused   int
	refusedAt time.Time
	// refresh coalescing
	rmu sync.Mutex
}

func newCache(r Reader, now func() time.Time) *cache {
	if now == nil {
		now = time.Now
	}
	return &cache{r: r, now: now, fn: map[string]*fnEntry{}, limits: map[string]int{}}
}

func (c *cache) get(account, name string) *fnEntry {
	c.mu.RLock()
	e := c.fn[wire.FunctionKey(account, name)]
	c.mu.RUnlock()
	return e
}

func (c *cache) snapshot() *wire.Snapshot {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.sn
}

// limit is an account's concurrency limit as of the installed snapshot.
func (c *cache) limit(account string) int {
	c.mu.RLock()
	l, ok := c.limits[account]
	c.mu.RUnlock()
	if !ok {
		return quota.DefaultAccountLimit
	}
	return l
}

// position is the installed snapshot's cluster id, term and index.
func (c *cache) position() (string, uint64, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cluster, c.term, c.index
}

// refresh replaces the cache from a placement read; on failure the old
// contents stay. A refused snapshot that makes the cache overdue is
// followed by a read from the leader, installed whatever its index.
func (c *cache) refresh(ctx context.Context) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	sn, err := c.r.Read(ctx)
	if err != nil {
		return err
	}
	err = c.install(sn, false)
	if !errors.Is(err, errStale) || !c.overdue() {
		return err
	}
	if sn, err = c.r.ReadLeader(ctx); err != nil {
		return err
	}
	return c.install(sn, true)
}

// refreshSince reads from the leader (falling back to any node) unless a
// refresh finished after t0 already: concurrent misses share one read.
func (c *cache) refreshSince(ctx context.Context, t0 time.Time) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.mu.RLock()
	fresh := c.at.After(t0)
	c.mu.RUnlock()
	if fresh {
		return nil
	}
	leader := true
	sn, err := c.r.ReadLeader(ctx)
	if err != nil {
		leader = false
		if sn, err = c.r.Read(ctx); err != nil {
			return err
		}
	}
	return c.install(sn, leader)
}

// overdue reports whether stale refusals went on long enough that the
// leader's snapshot should be installed whatever its index.
func (c *cache) overdue() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.overdueLocked(c.now())
}

func (c *cache) overdueLocked(now time.Time) bool {
	return c.refused >= staleRefusals || c.refused > 0 && now.Sub(c.refusedAt) >= staleFor
}

// install replaces the cache with a snapshot unless it is older than the
// installed one or than a recent write of this gateway; leader says the
// snapshot came from the Raft leader, which alone may override that once
// the cache is overdue. A snapshot of another placement cluster replaces
// everything. It holds the write lock throughout, so a put between the
// staleness check and the swap cannot be lost (the map is small, and only
// changed functions are parsed again).
func (c *cache) install(sn *wire.Snapshot, leader bool) error {
	if sn == nil {
		return errors.New("placement returned no snapshot")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	switch {
	case sn.ClusterID != "" && c.cluster != "" && sn.ClusterID != c.cluster:
		c.resetLocked()
	case sn.Index < c.floorLocked(now):
		if c.refused == 0 {
			c.refusedAt = now
		}
		c.refused++
		if !leader || !c.overdueLocked(now) {
			return errStale
		}
		c.resetLocked()
	}
	m := make(map[string]*fnEntry, len(sn.Functions))
	for _, f := range sn.Functions {
		k := wire.FunctionKey(f.Account, f.Name)
		if o := c.fn[k]; o != nil && o.fn.Revision == f.Revision && o.fn.ModifiedNs == f.ModifiedNs {
			m[k] = o
			continue
		}
		e, err := newEntry(f)
		if err != nil {
			continue // unparseable config: the function answers 404 here
		}
		m[k] = e
	}
	limits := make(map[string]int, len(sn.Accounts))
	for _, a := range sn.Accounts {
		limits[a.ID] = a.Limit
	}
	c.fn, c.sn, c.at, c.limits = m, sn, now, limits
	if sn.ClusterID != "" {
		c.cluster = sn.ClusterID
	}
	c.term, c.index = sn.Term, sn.Index
	c.refused = 0
	return nil
}

// floorLocked is the lowest snapshot index the cache accepts now.
func (c *cache) floorLocked(now time.Time) uint64 {
	if c.own > c.index && now.Sub(c.ownAt) < ownWriteHold {
		return c.own
	}
	return c.index
}

// resetLocked forgets everything the cache knew, so that the snapshot being
// installed is taken as it is.
func (c *cache) resetLocked() {
	c.fn = map[string]*fnEntry{}
	c.cluster, c.term, c.index, c.own, c.refused = "", 0, 0, 0, 0
}

var errStale = errors.New("placement snapshot older than the cache")

// put installs one function written at Raft index idx without waiting for
// the next refresh.
func (c *cache) put(f wire.Function, idx uint64) {
	e, err := newEntry(f)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.fn[wire.FunctionKey(f.Account, f.Name)] = e
	c.wroteLocked(idx)
	c.mu.Unlock()
}

// drop removes a function deleted at Raft index idx (0: not a write).
func (c *cache) drop(account, name string, idx uint64) {
	c.mu.Lock()
	delete(c.fn, wire.FunctionKey(account, name))
	c.wroteLocked(idx)
	c.mu.Unlock()
}

// wrote records the index of a write this gateway made.
func (c *cache) wrote(idx uint64) {
	c.mu.Lock()
	c.wroteLocked(idx)
	c.mu.Unlock()
}

func (c *cache) wroteLocked(idx uint64) {
	if idx == 0 {
		return
	}
	// A lower index inside the hold is an answer overtaken by a later
	// write; it neither lowers the floor nor extends the hold.
	if now := c.now(); idx >= c.own || now.Sub(c.ownAt) >= ownWriteHold {
		c.own, c.ownAt = idx, now
	}
}

func newEntry(f wire.Function) (*fnEntry, error) {
	var cfg api.SyntheticConfig
	if len(f.Synthetic) > 0 {
		if err := json.Unmarshal(f.Synthetic, &cfg); err != nil {
			return nil, err
		}
	}
	spec, err := wire.SpecFor(&f, LatestVersion)
	if err != nil {
		return nil, err
	}
	e := &fnEntry{fn: f, spec: wire.EncodeSpec(spec), rev: strconv.FormatUint(spec.Revision, 10), cfg: &cfg, versions: map[string]verEntry{}}
	for _, v := range f.Versions {
		vs := strconv.Itoa(v.Version)
		sp, err := wire.SpecFor(&f, vs)
		if err != nil {
			return nil, err
		}
		e.versions[vs] = verEntry{spec: wire.EncodeSpec(sp), rev: strconv.FormatUint(sp.Revision, 10), timeoutMs: sp.TimeoutMs, code: sp.CodeSha256}
	}
	return e, nil
}

// ProfileOf builds a synthetic profile from a function's configuration
// (wire.ProfileOf).
func ProfileOf(runtime string, cfg api.SyntheticConfig) (synthetic.Profile, time.Duration, error) {
	return wire.ProfileOf(runtime, cfg)
}
