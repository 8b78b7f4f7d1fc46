// Package pool is the sandbox pool policy shared by workers and the
// simulator: which warm sandbox serves the next invocation, when an idle
// sandbox is evicted (keep-alive TTL), and which idle sandbox is least
// recently used. It holds no locks and reads no clock: callers pass "now" as
// a time.Duration since any fixed epoch (wall time on a worker, virtual time
// in the simulator).
package pool

import (
	"sort"
	"time"
)

// Key identifies sandboxes that are interchangeable for an invocation.
type Key struct {
	Account  string
	Function string
	Version  string
	Digest   string // code digest; empty for synthetic functions
}

// Reuse is the order in which idle sandboxes are reused.
type Reuse int

const (
	// ReuseOldest reuses the oldest-created idle sandbox (the seed model's
	// free[0]); the newest sandboxes then idle out first after a burst.
	ReuseOldest Reuse = iota
	// ReuseMostRecent reuses the most recently released sandbox.
	ReuseMostRecent
)

// Forever is the TTL of a sandbox that is never evicted (provisioned).
const Forever time.Duration = 1<<63 - 1

// Sandbox is one execution environment in a pool.
type Sandbox struct {
	ID          string
	Key         Key
	Seq         uint64 // creation order within the pool
	Created     time.Duration
	LastUsed    time.Duration // end of its last invocation
	TTL         time.Duration // idle time after which it is evicted
	Busy        bool
	Provisioned bool
	Value       any // the owner's runtime state

	kp      *keyPool // its key's pool: Release and Remove skip the map lookup
	idleIdx int      // index in its key's idle heap, -1 when busy
	expIdx  int      // index in the pool's expiry heap, -1 when busy
}

// Expires is the time at which an idle sandbox is evicted.
func (s *Sandbox) Expires() time.Duration {
	if s.Provisioned || s.TTL == Forever || s.LastUsed > Forever-s.TTL {
		return Forever
	}
	return s.LastUsed + s.TTL
}

// Config configures a Pool.
type Config struct {
	Reuse Reuse
	TTL   time.Duration // default keep-alive for sandboxes added with ttl 0
}

// Pool holds every sandbox of one worker (or one simulated platform).
type Pool struct {
	cfg    Config
	seq    uint64
	keys   map[Key]*keyPool
	byID   map[string]*Sandbox
	expiry expHeap
	idle   int
	busy   int
}

type keyPool struct {
	owner *Pool
	idle  idleHeap
	total int
}

// New returns an empty pool.
func New(cfg Config) *Pool {
	return &Pool{cfg: cfg, keys: map[Key]*keyPool{}, byID: map[string]*Sandbox{}}
}

// DefaultTTL returns the pool's default keep-alive.
func (p *Pool) DefaultTTL() time.Duration { return p.cfg.TTL }

func (p *Pool) key(k Key) *keyPool {
	kp := p.keys[k]
	if kp == nil {
		kp = &keyPool{owner: p, idle: idleHeap{reuse: p.cfg.Reuse}}
		p.keys[k] = kp
	}
	return kp
}

// Add registers a new sandbox, busy with the invocation that caused its cold
// start. ttl 0 means the pool default.
// Ids must be unique: an id already in the pool returns the existing sandbox.
func (p *Pool) Add(id string, k Key, now, ttl time.Duration) *Sandbox {
	if s := p.byID[id]; s != nil {
		return s
	}
	if ttl == 0 {
		ttl = p.cfg.TTL
	}
	p.seq++
	kp := p.key(k)
	s := &Sandbox{ID: id, Key: k, Seq: p.seq, Created: now, LastUsed: now, TTL: ttl, Busy: true, kp: kp, idleIdx: -1, expIdx: -1}
	kp.total++
	p.byID[id] = s
	p.busy++
	return s
}

// AddIdle registers a new sandbox that is ready and idle (provisioned
// concurrency pre-warms sandboxes this way).
func (p *Pool) AddIdle(id string, k Key, now, ttl time.Duration, provisioned bool) *Sandbox {
	s := p.Add(id, k, now, ttl)
	s.Provisioned = provisioned
	p.Release(s, now)
	return s
}

// Get returns a sandbox by id.
func (p *Pool) Get(id string) *Sandbox { return p.byID[id] }

// Acquire marks an idle sandbox of k busy and returns it, or nil when none is
// idle. Provisioned sandboxes are preferred, then the Reuse order.
func (p *Pool) Acquire(k Key) *Sandbox {
	return p.AcquireFrom((*KeyPool)(p.keys[k]))
}

// Handle returns k's per-key handle, valid for the pool's lifetime, so that a
// caller reusing a key (the simulator) can skip hashing it on each Acquire.
func (p *Pool) Handle(k Key) *KeyPool { return (*KeyPool)(p.key(k)) }

// KeyPool is a handle on one key's sandboxes.
type KeyPool keyPool

// AcquireFrom is Acquire through a handle (nil means no sandbox).
func (p *Pool) AcquireFrom(h *KeyPool) *Sandbox {
	kp := (*keyPool)(h)
	if kp == nil || len(kp.idle.s) == 0 {
		return nil
	}
	s := kp.idle.remove(0)
	p.expiry.remove(s.expIdx)
	s.Busy = true
	p.idle--
	p.busy++
	return s
}

// Release marks a busy sandbox idle at now.
func (p *Pool) Release(s *Sandbox, now time.Duration) {
	if !s.Busy || !p.holds(s) {
		return
	}
	s.Busy = false
	s.LastUsed = now
	s.kp.idle.push(s)
	p.expiry.push(s)
	p.busy--
	p.idle++
}

// ReleaseFor is Release with a new keep-alive for this idle period (a
// keep-alive policy that adapts per release, such as the hybrid histogram).
func (p *Pool) ReleaseFor(s *Sandbox, now, ttl time.Duration) {
	if s.Busy && p.holds(s) {
		s.TTL = ttl
	}
	p.Release(s, now)
}

// holds reports whether s is in p, without hashing its id.
func (p *Pool) holds(s *Sandbox) bool { return s.kp != nil && s.kp.owner == p }

// Remove takes a sandbox out of the pool, busy or idle.
func (p *Pool) Remove(s *Sandbox) bool {
	if !p.holds(s) {
		return false
	}
	kp := s.kp
	if s.Busy {
		p.busy--
	} else {
		kp.idle.remove(s.idleIdx)
		p.expiry.remove(s.expIdx)
		p.idle--
	}
	delete(p.byID, s.ID)
	s.kp = nil
	kp.total--
	// Empty key pools stay: handles to them must remain valid, and a key
	// that had sandboxes usually gets them again.
	return true
}

// Expire removes every idle sandbox whose keep-alive has run out at now
// (now - LastUsed >= TTL) and calls fn for each, oldest deadline first.
func (p *Pool) Expire(now time.Duration, fn func(*Sandbox)) int {
	n := 0
	for p.expiry.Len() > 0 {
		s := p.expiry.s[0]
		if s.Expires() > now {
			break
		}
		p.Remove(s)
		n++
		if fn != nil {
			fn(s)
		}
	}
	return n
}

// NextExpiry returns the earliest time an idle sandbox will be evicted.
func (p *Pool) NextExpiry() (time.Duration, bool) {
	if p.expiry.Len() == 0 || p.expiry.s[0].Expires() == Forever {
		return 0, false
	}
	return p.expiry.s[0].Expires(), true
}

// LeastRecentlyUsed returns the idle sandbox with the oldest LastUsed among
// those match accepts (ties by id), or nil. Provisioned sandboxes are never
// candidates: they are paid for and must stay.
func (p *Pool) LeastRecentlyUsed(match func(Key) bool) *Sandbox {
	var best *Sandbox
	for k, kp := range p.keys {
		if kp.idle.Len() == 0 || !match(k) {
			continue
		}
		for _, s := range kp.idle.s {
			if s.Provisioned {
				continue
			}
			if best == nil || s.LastUsed < best.LastUsed || (s.LastUsed == best.LastUsed && s.ID < best.ID) {
				best = s
			}
		}
	}
	return best
}

// IdleOf appends to dst up to n idle sandboxes of k, least recently used
// first (ties by id), provisioned ones excluded.
func (p *Pool) IdleOf(dst []*Sandbox, k Key, n int) []*Sandbox {
	kp := p.keys[k]
	if kp == nil {
		return dst
	}
	start := len(dst)
	for _, s := range kp.idle.s {
		if !s.Provisioned {
			dst = append(dst, s)
		}
	}
	got := dst[start:]
	sort.Slice(got, func(i, j int) bool {
		if got[i].LastUsed != got[j].LastUsed {
			return got[i].LastUsed < got[j].LastUsed
		}
		return got[i].ID < got[j].ID
	})
	if len(got) > n {
		dst = dst[:start+n]
	}
	return dst
}

// Counts returns the idle and total sandboxes of k.
func (p *Pool) Counts(k Key) (idle, total int) {
	kp := p.keys[k]
	if kp == nil {
		return 0, 0
	}
	return kp.idle.Len(), kp.total
}

// Idle is the number of idle sandboxes; Busy the number running.
func (p *Pool) Idle() int { return p.idle }
func (p *Pool) Busy() int { return p.busy }
func (p *Pool) Len() int  { return p.idle + p.busy }

// Keys calls fn for every key with at least one sandbox.
func (p *Pool) Keys(fn func(k Key, idle, total int)) {
	for k, kp := range p.keys {
		if kp.total > 0 {
			fn(k, kp.idle.Len(), kp.total)
		}
	}
}

// Each calls fn for every sandbox.
func (p *Pool) Each(fn func(*Sandbox)) {
	for _, s := range p.byID {
		fn(s)
	}
}

// idleHeap orders a key's idle sandboxes for reuse. The heaps are typed
// (not container/heap) because the simulator drives them millions of times a
// second and interface calls dominated its profile.
type idleHeap struct {
	s     []*Sandbox
	reuse Reuse
}

func (h *idleHeap) less(a, b *Sandbox) bool {
	if a.Provisioned != b.Provisioned {
		return a.Provisioned
	}
	if h.reuse == ReuseMostRecent && a.LastUsed != b.LastUsed {
		return a.LastUsed > b.LastUsed
	}
	return a.Seq < b.Seq
}

func (h *idleHeap) Len() int           { return len(h.s) }
func (h *idleHeap) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }

func (h *idleHeap) set(i int, s *Sandbox) { h.s[i] = s; s.idleIdx = i }

func (h *idleHeap) push(s *Sandbox) {
	h.s = append(h.s, s)
	h.up(len(h.s)-1, s)
}

func (h *idleHeap) remove(i int) *Sandbox {
	s := h.s[i]
	last := len(h.s) - 1
	x := h.s[last]
	h.s[last] = nil
	h.s = h.s[:last]
	if i != last {
		h.set(i, x)
		if !h.down(i, x) {
			h.up(i, x)
		}
	}
	s.idleIdx = -1
	return s
}

func (h *idleHeap) up(i int, x *Sandbox) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(x, h.s[parent]) {
			break
		}
		h.set(i, h.s[parent])
		i = parent
	}
	h.set(i, x)
}

func (h *idleHeap) down(i int, x *Sandbox) bool {
	start, n := i, len(h.s)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h.less(h.s[r], h.s[c]) {
			c = r
		}
		if !h.less(h.s[c], x) {
			break
		}
		h.set(i, h.s[c])
		i = c
	}
	h.set(i, x)
	return i > start
}

// expHeap orders idle sandboxes by eviction deadline.
type expHeap struct{ s []*Sandbox }

func expLess(a, b *Sandbox) bool {
	ea, eb := a.Expires(), b.Expires()
	if ea != eb {
		return ea < eb
	}
	return a.Seq < b.Seq
}

func (h *expHeap) Len() int           { return len(h.s) }
func (h *expHeap) Less(i, j int) bool { return expLess(h.s[i], h.s[j]) }

func (h *expHeap) set(i int, s *Sandbox) { h.s[i] = s; s.expIdx = i }

func (h *expHeap) push(s *Sandbox) {
	h.s = append(h.s, s)
	h.up(len(h.s)-1, s)
}

func (h *expHeap) remove(i int) *Sandbox {
	s := h.s[i]
	last := len(h.s) - 1
	x := h.s[last]
	h.s[last] = nil
	h.s = h.s[:last]
	if i != last {
		h.set(i, x)
		if !h.down(i, x) {
			h.up(i, x)
		}
	}
	s.expIdx = -1
	return s
}

func (h *expHeap) up(i int, x *Sandbox) {
	for i > 0 {
		parent := (i - 1) / 2
		if !expLess(x, h.s[parent]) {
			break
		}
		h.set(i, h.s[parent])
		i = parent
	}
	h.set(i, x)
}

func (h *expHeap) down(i int, x *Sandbox) bool {
	start, n := i, len(h.s)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && expLess(h.s[r], h.s[c]) {
			c = r
		}
		if !expLess(h.s[c], x) {
			break
		}
		h.set(i, h.s[c])
		i = c
	}
	h.set(i, x)
	return i > start
}
