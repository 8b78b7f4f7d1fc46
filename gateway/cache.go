package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/worker"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// fnEntry is a cached function with everything the invoke path needs
// precomputed.
type fnEntry struct {
	fn   placement.Function
	spec string // worker.Spec, encoded once per revision (cold starts)
	rev  string // the Spec's revision (warm requests)
	cfg  *api.SyntheticConfig
}

// Reader is what the cache needs from placement: a read that works without
// a leader (static stability: the gateway keeps serving what it knows).
type Reader interface {
	Read(ctx context.Context) (*placement.Snapshot, error)
	ReadLeader(ctx context.Context) (*placement.Snapshot, error)
}

type cache struct {
	r  Reader
	mu sync.RWMutex
	fn map[string]*fnEntry
	sn *placement.Snapshot
	at time.Time
	// seen is the highest Raft index of a write this gateway made or
	// observed; older snapshots (from a lagging follower) are ignored.
	seen uint64
	// refresh coalescing
	rmu sync.Mutex
}

func newCache(r Reader) *cache { return &cache{r: r, fn: map[string]*fnEntry{}} }

func (c *cache) get(account, name string) *fnEntry {
	c.mu.RLock()
	e := c.fn[placement.FunctionKey(account, name)]
	c.mu.RUnlock()
	return e
}

func (c *cache) snapshot() *placement.Snapshot {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.sn
}

// refresh replaces the cache from a placement read; on failure the old
// contents stay.
func (c *cache) refresh(ctx context.Context) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	sn, err := c.r.Read(ctx)
	if err != nil {
		return err
	}
	return c.install(sn)
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
	sn, err := c.r.ReadLeader(ctx)
	if err != nil {
		if sn, err = c.r.Read(ctx); err != nil {
			return err
		}
	}
	return c.install(sn)
}

// install replaces the cache with a snapshot unless a write newer than it
// was already seen. It holds the write lock throughout, so a put between
// the staleness check and the swap cannot be lost (the map is small, and
// only changed functions are parsed again).
func (c *cache) install(sn *placement.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sn.Index < c.seen {
		return errStale
	}
	m := make(map[string]*fnEntry, len(sn.Functions))
	for _, f := range sn.Functions {
		k := placement.FunctionKey(f.Account, f.Name)
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
	c.fn, c.sn, c.at = m, sn, time.Now()
	return nil
}

var errStale = errors.New("placement snapshot older than a write already seen")

// put installs one function written at Raft index idx without waiting for
// the next refresh.
func (c *cache) put(f placement.Function, idx uint64) {
	e, err := newEntry(f)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.fn[placement.FunctionKey(f.Account, f.Name)] = e
	c.observe(idx)
	c.mu.Unlock()
}

// drop removes a function deleted at Raft index idx.
func (c *cache) drop(account, name string, idx uint64) {
	c.mu.Lock()
	delete(c.fn, placement.FunctionKey(account, name))
	c.observe(idx)
	c.mu.Unlock()
}

// observe records a write index; called with c.mu held.
func (c *cache) observe(idx uint64) {
	if idx > c.seen {
		c.seen = idx
	}
}

func newEntry(f placement.Function) (*fnEntry, error) {
	var cfg api.SyntheticConfig
	if len(f.Synthetic) > 0 {
		if err := json.Unmarshal(f.Synthetic, &cfg); err != nil {
			return nil, err
		}
	}
	prof, keep, err := ProfileOf(f.Runtime, cfg)
	if err != nil {
		return nil, err
	}
	spec := worker.Spec{Revision: f.Created, Runtime: f.Runtime, MemoryMB: f.MemoryMB, TimeoutMs: f.TimeoutMs, KeepAlive: keep, Profile: prof}
	return &fnEntry{fn: f, spec: worker.EncodeSpec(spec), rev: strconv.FormatUint(f.Created, 10), cfg: &cfg}, nil
}

// ProfileOf builds a synthetic profile from a function's configuration:
// measured defaults for cfg.Profile (or the runtime name), then whatever the
// user set explicitly.
func ProfileOf(runtime string, cfg api.SyntheticConfig) (synthetic.Profile, time.Duration, error) {
	base := cfg.Profile
	if base == "" {
		base = runtime
	}
	p := synthetic.DefaultProfile(base)
	set := func(dst *synthetic.Dist, s, what string) error {
		if s == "" {
			return nil
		}
		d, err := synthetic.ParseDist(s)
		if err != nil {
			return fmt.Errorf("Coldstart.%s: %w", what, err)
		}
		*dst = d
		return nil
	}
	if cfg.ColdStart != "" {
		d, err := synthetic.ParseDist(cfg.ColdStart)
		if err != nil {
			return p, 0, fmt.Errorf("Coldstart.ColdStart: %w", err)
		}
		if d.Kind == synthetic.Fixed {
			p = p.WithColdStart(d.A)
		} else {
			// A distribution for the whole cold start goes to runtime init;
			// the other phases are zero.
			p.SandboxCreate, p.FunctionInit, p.RuntimeInit = synthetic.FixedDist(0), synthetic.FixedDist(0), d
		}
	}
	for _, s := range []struct {
		dst  *synthetic.Dist
		v, n string
	}{{&p.SandboxCreate, cfg.SandboxCreate, "SandboxCreate"}, {&p.RuntimeInit, cfg.RuntimeInit, "RuntimeInit"}, {&p.FunctionInit, cfg.FunctionInit, "FunctionInit"}, {&p.Duration, cfg.Duration, "Duration"}} {
		if err := set(s.dst, s.v, s.n); err != nil {
			return p, 0, err
		}
	}
	var keep time.Duration
	if cfg.KeepAlive != "" {
		d, err := time.ParseDuration(cfg.KeepAlive)
		if err != nil || d <= 0 {
			return p, 0, fmt.Errorf("Coldstart.KeepAlive: %q is not a positive duration", cfg.KeepAlive)
		}
		keep = d
	}
	return p, keep, nil
}
