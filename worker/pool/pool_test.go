package pool

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var (
	keyA = Key{Account: "111111111111", Function: "f", Version: "1", Digest: "sha256:aa"}
	keyB = Key{Account: "111111111111", Function: "g", Version: "1", Digest: "sha256:bb"}
)

const (
	sec = time.Second
	ttl = 10 * time.Minute
)

// newPool returns a pool whose consistency is checked when the test ends.
func newPool(t testing.TB, reuse Reuse) *Pool {
	p := New(Config{Reuse: reuse, TTL: ttl})
	t.Cleanup(func() { checkInvariants(t, p) })
	return p
}

// checkInvariants verifies the counters, the per-key totals and both heaps
// (heap order and the back-indices each sandbox keeps).
func checkInvariants(t testing.TB, p *Pool) {
	t.Helper()
	idle, busy := 0, 0
	perKey := map[Key]int{}
	for id, s := range p.byID {
		if s.ID != id {
			t.Fatalf("byID[%q] holds %q", id, s.ID)
		}
		perKey[s.Key]++
		if s.Busy {
			busy++
			if s.idleIdx != -1 || s.expIdx != -1 {
				t.Fatalf("busy %s still indexed (%d, %d)", s.ID, s.idleIdx, s.expIdx)
			}
			continue
		}
		idle++
		kp := p.keys[s.Key]
		if kp == nil || s.idleIdx < 0 || s.idleIdx >= len(kp.idle.s) || kp.idle.s[s.idleIdx] != s {
			t.Fatalf("idle %s not at its idle-heap index %d", s.ID, s.idleIdx)
		}
		if s.expIdx < 0 || s.expIdx >= len(p.expiry.s) || p.expiry.s[s.expIdx] != s {
			t.Fatalf("idle %s not at its expiry-heap index %d", s.ID, s.expIdx)
		}
	}
	if idle != p.Idle() || busy != p.Busy() || idle+busy != p.Len() {
		t.Fatalf("counters idle=%d busy=%d len=%d, actual idle=%d busy=%d", p.Idle(), p.Busy(), p.Len(), idle, busy)
	}
	if len(p.expiry.s) != idle {
		t.Fatalf("expiry heap holds %d, %d idle", len(p.expiry.s), idle)
	}
	// Empty key pools stay (handles to them must remain valid); every
	// key with sandboxes has a pool, and Keys reports only non-empty ones.
	reported := 0
	p.Keys(func(Key, int, int) { reported++ })
	if reported != len(perKey) {
		t.Fatalf("%d keys with sandboxes, Keys reports %d", len(perKey), reported)
	}
	for k := range perKey {
		if p.keys[k] == nil {
			t.Fatalf("key %v has sandboxes but no key pool", k)
		}
	}
	for k, kp := range p.keys {
		if kp.total != perKey[k] {
			t.Fatalf("key %v total %d, actual %d", k, kp.total, perKey[k])
		}
		checkHeap(t, "idle", &kp.idle)
	}
	checkHeap(t, "expiry", &p.expiry)
}

// ordered is the part of a heap the order check needs.
type ordered interface {
	Len() int
	Less(i, j int) bool
}

func checkHeap(t testing.TB, name string, h ordered) {
	t.Helper()
	for i := 1; i < h.Len(); i++ {
		if h.Less(i, (i-1)/2) {
			t.Fatalf("%s heap out of order at %d", name, i)
		}
	}
}

// busy adds a sandbox that is running its cold-start invocation.
func busy(p *Pool, id string, k Key, now time.Duration) *Sandbox { return p.Add(id, k, now, 0) }

func ids(ss []*Sandbox) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// ---------------------------------------------------------------------------
// Warm reuse

func TestAcquireSameKeyOnly(t *testing.T) {
	p := newPool(t, ReuseOldest)
	if p.Acquire(keyA) != nil {
		t.Fatal("empty pool returned a sandbox")
	}
	s := p.AddIdle("a1", keyA, 0, 0, false)
	// Any field of the key differing makes it a different pool: in
	// particular a new code digest (a deploy) must never reuse old sandboxes.
	for _, k := range []Key{
		keyB,
		{Account: "222222222222", Function: keyA.Function, Version: keyA.Version, Digest: keyA.Digest},
		{Account: keyA.Account, Function: "other", Version: keyA.Version, Digest: keyA.Digest},
		{Account: keyA.Account, Function: keyA.Function, Version: "2", Digest: keyA.Digest},
		{Account: keyA.Account, Function: keyA.Function, Version: keyA.Version, Digest: "sha256:new"},
		{},
	} {
		if got := p.Acquire(k); got != nil {
			t.Fatalf("Acquire(%+v) returned %s of %+v", k, got.ID, got.Key)
		}
	}
	if got := p.Acquire(keyA); got != s || !got.Busy {
		t.Fatalf("Acquire(keyA) = %v, want a1 busy", got)
	}
	if p.Acquire(keyA) != nil {
		t.Fatal("a busy sandbox was handed out twice")
	}
	if idle, total := p.Counts(keyA); idle != 0 || total != 1 {
		t.Fatalf("Counts = %d/%d, want 0/1", idle, total)
	}
}

// releaseInOrder creates s1..s3 (s1 oldest) and releases them s3, s1, s2.
func releaseInOrder(p *Pool) (s1, s2, s3 *Sandbox) {
	s1 = busy(p, "s1", keyA, 1*sec)
	s2 = busy(p, "s2", keyA, 2*sec)
	s3 = busy(p, "s3", keyA, 3*sec)
	p.Release(s3, 10*sec)
	p.Release(s1, 20*sec)
	p.Release(s2, 30*sec)
	return
}

func TestReuseOldest(t *testing.T) {
	p := newPool(t, ReuseOldest)
	s1, s2, s3 := releaseInOrder(p)
	for _, want := range []*Sandbox{s1, s2, s3} {
		if got := p.Acquire(keyA); got != want {
			t.Fatalf("got %v, want %s (oldest created first)", got, want.ID)
		}
	}
}

func TestReuseMostRecent(t *testing.T) {
	p := newPool(t, ReuseMostRecent)
	s1, s2, s3 := releaseInOrder(p)
	for _, want := range []*Sandbox{s2, s1, s3} {
		if got := p.Acquire(keyA); got != want {
			t.Fatalf("got %v, want %s (most recently released first)", got, want.ID)
		}
	}
	// Ties on LastUsed fall back to creation order.
	a, b := busy(p, "t-b", keyB, 0), busy(p, "t-a", keyB, 0)
	p.Release(b, 5*sec)
	p.Release(a, 5*sec)
	if got := p.Acquire(keyB); got != a {
		t.Fatalf("tie: got %v, want the older %s", got, a.ID)
	}
}

func TestReuseOrderSurvivesReacquire(t *testing.T) {
	// A sandbox that is acquired and released again keeps its creation order
	// (ReuseOldest) but moves to the front (ReuseMostRecent).
	for _, tc := range []struct {
		reuse Reuse
		want  string
	}{{ReuseOldest, "s1"}, {ReuseMostRecent, "s3"}} {
		p := newPool(t, tc.reuse)
		releaseInOrder(p)
		for p.Acquire(keyA) != nil {
		}
		for i, id := range []string{"s1", "s2", "s3"} {
			p.Release(p.Get(id), 100*sec+time.Duration(i)*sec)
		}
		if got := p.Acquire(keyA); got.ID != tc.want {
			t.Errorf("reuse %d: got %s, want %s", tc.reuse, got.ID, tc.want)
		}
	}
}

func TestProvisionedFirst(t *testing.T) {
	for _, reuse := range []Reuse{ReuseOldest, ReuseMostRecent} {
		t.Run(fmt.Sprint(reuse), func(t *testing.T) {
			p := newPool(t, reuse)
			old := p.AddIdle("on-demand-old", keyA, 0, 0, false)
			pc1 := p.AddIdle("pc1", keyA, 1*sec, Forever, true)
			pc2 := p.AddIdle("pc2", keyA, 2*sec, Forever, true)
			recent := p.AddIdle("on-demand-recent", keyA, 3*sec, 0, false)
			got := []*Sandbox{p.Acquire(keyA), p.Acquire(keyA)}
			if !got[0].Provisioned || !got[1].Provisioned {
				t.Fatalf("provisioned sandboxes must be used first, got %v", ids(got))
			}
			wantPC := []*Sandbox{pc1, pc2}
			wantSpill := []*Sandbox{old, recent}
			if reuse == ReuseMostRecent {
				wantPC = []*Sandbox{pc2, pc1}
				wantSpill = []*Sandbox{recent, old}
			}
			if !slices.Equal(got, wantPC) {
				t.Fatalf("provisioned order %v, want %v", ids(got), ids(wantPC))
			}
			// All provisioned busy: spill over to on-demand.
			got = []*Sandbox{p.Acquire(keyA), p.Acquire(keyA)}
			if !slices.Equal(got, wantSpill) {
				t.Fatalf("spill-over order %v, want %v", ids(got), ids(wantSpill))
			}
			if p.Acquire(keyA) != nil {
				t.Fatal("pool should be exhausted")
			}
		})
	}
}

func TestReleaseIgnoresIdleAndForeign(t *testing.T) {
	p := newPool(t, ReuseOldest)
	s := p.AddIdle("a", keyA, 0, 0, false)
	p.Release(s, 5*sec) // double release: no-op
	if s.LastUsed != 0 || p.Idle() != 1 || p.Busy() != 0 {
		t.Fatalf("double release changed the pool: lastUsed=%v idle=%d busy=%d", s.LastUsed, p.Idle(), p.Busy())
	}
	// A sandbox the pool does not hold (removed, or another pool's).
	foreign := New(Config{TTL: ttl}).Add("a", keyA, 0, 0)
	p.Release(foreign, sec)
	if p.Idle() != 1 || p.Len() != 1 {
		t.Fatalf("foreign release changed the pool")
	}
}

// ---------------------------------------------------------------------------
// Keep-alive TTL

func TestExpireBoundary(t *testing.T) {
	p := newPool(t, ReuseOldest)
	s := busy(p, "a", keyA, 0)
	p.Release(s, 100*sec)
	if got := s.Expires(); got != 100*sec+ttl {
		t.Fatalf("Expires = %v", got)
	}
	if at, ok := p.NextExpiry(); !ok || at != 100*sec+ttl {
		t.Fatalf("NextExpiry = %v, %v", at, ok)
	}
	// now - LastUsed = TTL - 1ns: still alive.
	if n := p.Expire(100*sec+ttl-1, func(*Sandbox) { t.Fatal("callback for a live sandbox") }); n != 0 {
		t.Fatalf("expired %d at TTL-1ns", n)
	}
	if p.Get("a") != s {
		t.Fatal("sandbox gone before its TTL")
	}
	// now - LastUsed = TTL exactly: evicted.
	var got []*Sandbox
	if n := p.Expire(100*sec+ttl, func(s *Sandbox) { got = append(got, s) }); n != 1 || len(got) != 1 || got[0] != s {
		t.Fatalf("at TTL: expired %d %v, want a", n, ids(got))
	}
	if p.Get("a") != nil || p.Len() != 0 {
		t.Fatal("expired sandbox still in the pool")
	}
	if _, ok := p.NextExpiry(); ok {
		t.Fatal("NextExpiry on an empty pool")
	}
	if p.Expire(time.Hour*1000, nil) != 0 {
		t.Fatal("nil callback, empty pool")
	}
}

// The worker's Expire callback reads the pool (Counts, to update its warm
// subscription): the pool must already be consistent when fn runs.
func TestExpireCallbackSeesConsistentPool(t *testing.T) {
	p := newPool(t, ReuseOldest)
	p.AddIdle("a", keyA, 0, time.Minute, false)
	p.AddIdle("b", keyA, 0, 2*time.Minute, false)
	busy(p, "c", keyA, 0)
	var seen [][2]int
	p.Expire(2*time.Minute, func(s *Sandbox) {
		idle, total := p.Counts(s.Key)
		seen = append(seen, [2]int{idle, total})
		if p.Get(s.ID) != nil {
			t.Errorf("%s still in the pool inside its eviction callback", s.ID)
		}
	})
	if want := [][2]int{{1, 2}, {0, 1}}; !slices.Equal(seen, want) {
		t.Fatalf("Counts inside callback %v, want %v", seen, want)
	}
}

func TestExpireNilCallback(t *testing.T) {
	p := newPool(t, ReuseOldest)
	p.AddIdle("a", keyA, 0, sec, false)
	if n := p.Expire(sec, nil); n != 1 || p.Len() != 0 {
		t.Fatalf("Expire with nil fn: %d, len %d", n, p.Len())
	}
}

func TestPerSandboxTTLAndOrder(t *testing.T) {
	p := newPool(t, ReuseOldest)
	if p.DefaultTTL() != ttl {
		t.Fatalf("DefaultTTL = %v", p.DefaultTTL())
	}
	long := p.AddIdle("long", keyA, 0, 0, false) // default 10m
	short := p.AddIdle("short", keyA, 0, time.Minute, false)
	p.AddIdle("mid", keyB, 30*sec, 5*time.Minute, false)          // deadline 5m30s
	p.AddIdle("tie-x", keyB, 2*time.Minute, 3*time.Minute, false) // deadline 5m, created first
	p.AddIdle("tie-y", keyA, 4*time.Minute, time.Minute, false)   // deadline 5m
	if long.TTL != ttl || short.TTL != time.Minute {
		t.Fatalf("TTLs %v %v", long.TTL, short.TTL)
	}
	var order []string
	rec := func(s *Sandbox) { order = append(order, s.ID) }
	p.Expire(time.Minute-1, rec)
	if len(order) != 0 {
		t.Fatalf("expired early: %v", order)
	}
	p.Expire(5*time.Minute+30*sec, rec)
	// Oldest deadline first; equal deadlines by creation order.
	if want := []string{"short", "tie-x", "tie-y", "mid"}; !slices.Equal(order, want) {
		t.Fatalf("expiry order %v, want %v", order, want)
	}
	if at, ok := p.NextExpiry(); !ok || at != ttl {
		t.Fatalf("NextExpiry = %v %v, want %v", at, ok, ttl)
	}
}

func TestExpireSkipsBusyAndReleaseResetsClock(t *testing.T) {
	p := newPool(t, ReuseOldest)
	p.AddIdle("a", keyA, 0, time.Minute, false)
	s := p.Acquire(keyA)
	if n := p.Expire(time.Hour, nil); n != 0 {
		t.Fatal("a busy sandbox was evicted")
	}
	if _, ok := p.NextExpiry(); ok {
		t.Fatal("NextExpiry counts busy sandboxes")
	}
	p.Release(s, time.Hour)
	if p.Expire(time.Hour+time.Minute-1, nil) != 0 {
		t.Fatal("keep-alive did not restart at release")
	}
	if p.Expire(time.Hour+time.Minute, nil) != 1 {
		t.Fatal("not evicted at the new deadline")
	}
}

func TestZeroTTLEvictsAtRelease(t *testing.T) {
	p := New(Config{}) // no default keep-alive
	s := p.Add("a", keyA, 0, 0)
	p.Release(s, 5*sec)
	if n := p.Expire(5*sec, nil); n != 1 {
		t.Fatalf("TTL 0: now-LastUsed = 0 >= 0 must evict, got %d", n)
	}
	checkInvariants(t, p)
}

func TestProvisionedNeverExpire(t *testing.T) {
	p := newPool(t, ReuseOldest)
	pc := p.AddIdle("pc", keyA, 0, Forever, true)
	if pc.Expires() != Forever {
		t.Fatalf("Expires = %v", pc.Expires())
	}
	if _, ok := p.NextExpiry(); ok {
		t.Fatal("NextExpiry reports a provisioned sandbox")
	}
	if n := p.Expire(Forever-1, nil); n != 0 {
		t.Fatal("provisioned sandbox evicted")
	}
	// Used and released late in time: still Forever (no overflow).
	p.Release(p.Acquire(keyA), Forever/2)
	if pc.Expires() != Forever || p.Expire(Forever-1, nil) != 0 {
		t.Fatal("provisioned sandbox evicted after reuse")
	}
	// An on-demand sandbox next to it still has a deadline.
	p.AddIdle("od", keyA, 0, time.Minute, false)
	if at, ok := p.NextExpiry(); !ok || at != time.Minute {
		t.Fatalf("NextExpiry = %v %v", at, ok)
	}
}

// Provisioned concurrency is never evicted by keep-alive (architecture.md:
// "Provisioned concurrency pre-creates sandboxes that the TTL never evicts").
// The pool enforces that with the Provisioned flag for LeastRecentlyUsed but
// only with the TTL for Expire, so a caller that passes ttl 0 ("pool
// default") gets a provisioned sandbox that idles out.
func TestProvisionedNeverExpireWithDefaultTTL(t *testing.T) {
	p := newPool(t, ReuseOldest)
	p.AddIdle("pc", keyA, 0, 0, true)
	if n := p.Expire(ttl, nil); n != 0 {
		t.Fatalf("provisioned sandbox added with ttl 0 evicted after the default TTL")
	}
	if at, ok := p.NextExpiry(); ok {
		t.Fatalf("NextExpiry = %v for a pool holding only provisioned sandboxes", at)
	}
}

func TestExpiresOverflow(t *testing.T) {
	s := &Sandbox{LastUsed: Forever - sec, TTL: time.Hour}
	if s.Expires() != Forever {
		t.Fatalf("LastUsed+TTL overflow: %v", s.Expires())
	}
	s = &Sandbox{LastUsed: Forever - time.Hour, TTL: time.Hour}
	if s.Expires() != Forever {
		t.Fatalf("exactly at the edge: %v", s.Expires())
	}
	s = &Sandbox{LastUsed: 5 * sec, TTL: time.Hour}
	if s.Expires() != time.Hour+5*sec {
		t.Fatalf("plain: %v", s.Expires())
	}
}

func TestNextExpiry(t *testing.T) {
	p := newPool(t, ReuseOldest)
	if _, ok := p.NextExpiry(); ok {
		t.Fatal("empty pool")
	}
	busy(p, "busy", keyA, 0)
	if _, ok := p.NextExpiry(); ok {
		t.Fatal("only busy sandboxes")
	}
	a := p.AddIdle("a", keyA, 10*sec, time.Minute, false)
	p.AddIdle("b", keyB, 0, 2*time.Minute, false)
	if at, ok := p.NextExpiry(); !ok || at != 10*sec+time.Minute {
		t.Fatalf("NextExpiry = %v %v", at, ok)
	}
	// The earliest is acquired: the next one takes over.
	if p.Acquire(keyA) != a {
		t.Fatal("acquire a")
	}
	if at, ok := p.NextExpiry(); !ok || at != 2*time.Minute {
		t.Fatalf("after acquire: %v %v", at, ok)
	}
	// Expire returns exactly what NextExpiry promised.
	if p.Expire(2*time.Minute, nil) != 1 {
		t.Fatal("not evicted at NextExpiry")
	}
}

// ---------------------------------------------------------------------------
// Remove

func TestRemoveBusy(t *testing.T) {
	p := newPool(t, ReuseOldest)
	s := busy(p, "a", keyA, 0)
	p.AddIdle("b", keyA, 0, 0, false)
	if !p.Remove(s) {
		t.Fatal("Remove busy")
	}
	if p.Busy() != 0 || p.Idle() != 1 || p.Len() != 1 || p.Get("a") != nil {
		t.Fatalf("after remove: busy=%d idle=%d", p.Busy(), p.Idle())
	}
	if idle, total := p.Counts(keyA); idle != 1 || total != 1 {
		t.Fatalf("Counts = %d/%d", idle, total)
	}
	// The invocation that ran in it finishes later: nothing happens.
	p.Release(s, sec)
	if p.Idle() != 1 || p.Acquire(keyA).ID != "b" || p.Acquire(keyA) != nil {
		t.Fatal("a removed sandbox came back")
	}
	if p.Remove(s) {
		t.Fatal("second Remove reported true")
	}
}

func TestRemoveIdle(t *testing.T) {
	p := newPool(t, ReuseOldest)
	a := p.AddIdle("a", keyA, 0, time.Minute, false)
	p.AddIdle("b", keyA, 0, time.Hour, false)
	if !p.Remove(a) {
		t.Fatal("Remove idle")
	}
	if at, _ := p.NextExpiry(); at != time.Hour {
		t.Fatalf("NextExpiry still sees the removed sandbox: %v", at)
	}
	if got := p.Acquire(keyA); got == nil || got.ID != "b" {
		t.Fatalf("Acquire = %v", got)
	}
	if p.Expire(time.Hour*2, nil) != 0 {
		t.Fatal("nothing idle is left to expire")
	}
}

func TestRemoveDropsEmptyKey(t *testing.T) {
	p := newPool(t, ReuseOldest)
	a := p.AddIdle("a", keyA, 0, 0, false)
	p.AddIdle("b", keyB, 0, 0, false)
	p.Remove(a)
	var keys []Key
	p.Keys(func(k Key, idle, total int) { keys = append(keys, k) })
	if len(keys) != 1 || keys[0] != keyB {
		t.Fatalf("Keys = %v", keys)
	}
	if idle, total := p.Counts(keyA); idle != 0 || total != 0 {
		t.Fatalf("Counts(keyA) = %d/%d", idle, total)
	}
	// The key can be used again.
	p.AddIdle("a2", keyA, sec, 0, false)
	if p.Acquire(keyA).ID != "a2" {
		t.Fatal("re-created key")
	}
}

func TestRemoveForeign(t *testing.T) {
	p := newPool(t, ReuseOldest)
	p.AddIdle("a", keyA, 0, 0, false)
	impostor := &Sandbox{ID: "a", Key: keyA, idleIdx: -1, expIdx: -1}
	if p.Remove(impostor) {
		t.Fatal("removed a sandbox the pool does not hold")
	}
	if p.Len() != 1 {
		t.Fatal("pool changed")
	}
}

// ---------------------------------------------------------------------------
// LeastRecentlyUsed

func TestLeastRecentlyUsed(t *testing.T) {
	p := newPool(t, ReuseOldest)
	other := Key{Account: "222222222222", Function: "f", Version: "1"}
	p.AddIdle("other-account-oldest", other, 0, 0, false)
	p.AddIdle("pc-oldest", keyA, 1*sec, Forever, true)
	busy(p, "busy-oldest", keyA, 0)
	p.AddIdle("z-20", keyA, 20*sec, 0, false)
	p.AddIdle("y-20", keyB, 20*sec, 0, false)
	p.AddIdle("b-30", keyB, 30*sec, 0, false)

	sameAccount := func(k Key) bool { return k.Account == keyA.Account }
	got := p.LeastRecentlyUsed(sameAccount)
	if got == nil || got.ID != "y-20" {
		t.Fatalf("LRU = %v, want y-20 (oldest non-provisioned idle, tie by id)", got)
	}
	onlyA := func(k Key) bool { return k == keyA }
	if got := p.LeastRecentlyUsed(onlyA); got == nil || got.ID != "z-20" {
		t.Fatalf("LRU(keyA) = %v", got)
	}
	if got := p.LeastRecentlyUsed(func(k Key) bool { return k == other }); got == nil || got.ID != "other-account-oldest" {
		t.Fatalf("LRU(other) = %v", got)
	}
	if got := p.LeastRecentlyUsed(func(Key) bool { return false }); got != nil {
		t.Fatalf("LRU(none) = %v", got.ID)
	}
	// LRU does not take the sandbox.
	if p.Idle() != 5 {
		t.Fatal("LeastRecentlyUsed changed the pool")
	}
	// Only provisioned (and busy) left for keyA: no candidate.
	p.Remove(p.Get("z-20"))
	if got := p.LeastRecentlyUsed(onlyA); got != nil {
		t.Fatalf("provisioned or busy sandbox offered for reclaim: %s", got.ID)
	}
}

// ---------------------------------------------------------------------------
// Counts, Keys, Each

func TestCountsKeysEach(t *testing.T) {
	p := newPool(t, ReuseOldest)
	busy(p, "a1", keyA, 0)
	p.AddIdle("a2", keyA, 0, 0, false)
	p.AddIdle("b1", keyB, 0, 0, true)
	if i, n := p.Counts(keyA); i != 1 || n != 2 {
		t.Fatalf("Counts(A) = %d/%d", i, n)
	}
	if i, n := p.Counts(keyB); i != 1 || n != 1 {
		t.Fatalf("Counts(B) = %d/%d", i, n)
	}
	if p.Idle() != 2 || p.Busy() != 1 || p.Len() != 3 {
		t.Fatalf("idle %d busy %d len %d", p.Idle(), p.Busy(), p.Len())
	}
	got := map[Key][2]int{}
	p.Keys(func(k Key, idle, total int) { got[k] = [2]int{idle, total} })
	if len(got) != 2 || got[keyA] != [2]int{1, 2} || got[keyB] != [2]int{1, 1} {
		t.Fatalf("Keys = %v", got)
	}
	var each []string
	p.Each(func(s *Sandbox) { each = append(each, s.ID) })
	slices.Sort(each)
	if !slices.Equal(each, []string{"a1", "a2", "b1"}) {
		t.Fatalf("Each = %v", each)
	}
	// Seq is the creation order, Value belongs to the owner.
	if !(p.Get("a1").Seq < p.Get("a2").Seq && p.Get("a2").Seq < p.Get("b1").Seq) {
		t.Fatal("Seq is not creation order")
	}
	p.Get("a1").Value = "runtime state"
	if p.Get("a1").Value != "runtime state" {
		t.Fatal("Value")
	}
}

// ---------------------------------------------------------------------------
// Randomized model test against a slice-based reference.

type ref struct {
	reuse Reuse
	def   time.Duration
	seq   uint64
	boxes []*refBox
}

type refBox struct {
	id                string
	key               Key
	seq               uint64
	lastUsed, ttl     time.Duration
	busy, provisioned bool
}

func (b *refBox) expires() time.Duration {
	if b.ttl == Forever || b.lastUsed > Forever-b.ttl {
		return Forever
	}
	return b.lastUsed + b.ttl
}

func (r *ref) add(id string, k Key, now, ttl time.Duration, idle, prov bool) {
	if ttl == 0 {
		ttl = r.def
	}
	r.seq++
	r.boxes = append(r.boxes, &refBox{id: id, key: k, seq: r.seq, lastUsed: now, ttl: ttl, busy: !idle, provisioned: prov})
}

func (r *ref) live() []*refBox { return r.boxes }

func (r *ref) drop(id string) {
	r.boxes = slices.DeleteFunc(r.boxes, func(b *refBox) bool { return b.id == id })
}

func (r *ref) acquire(k Key) string {
	var best *refBox
	for _, b := range r.live() {
		if b.busy || b.key != k {
			continue
		}
		if best == nil || r.before(b, best) {
			best = b
		}
	}
	if best == nil {
		return ""
	}
	best.busy = true
	return best.id
}

func (r *ref) before(a, b *refBox) bool {
	if a.provisioned != b.provisioned {
		return a.provisioned
	}
	if r.reuse == ReuseMostRecent && a.lastUsed != b.lastUsed {
		return a.lastUsed > b.lastUsed
	}
	return a.seq < b.seq
}

func (r *ref) expire(now time.Duration) []string {
	var out []*refBox
	for _, b := range r.live() {
		if !b.busy && b.expires() <= now {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *refBox) int {
		return cmp.Or(cmp.Compare(a.expires(), b.expires()), cmp.Compare(a.seq, b.seq))
	})
	var names []string
	for _, b := range out {
		r.drop(b.id)
		names = append(names, b.id)
	}
	return names
}

func (r *ref) nextExpiry() (time.Duration, bool) {
	at, ok := Forever, false
	for _, b := range r.live() {
		if !b.busy && b.expires() < at {
			at, ok = b.expires(), true
		}
	}
	if !ok {
		return 0, false
	}
	return at, true
}

func (r *ref) lru(match func(Key) bool) string {
	var best *refBox
	for _, b := range r.live() {
		if b.busy || b.provisioned || !match(b.key) {
			continue
		}
		if best == nil || b.lastUsed < best.lastUsed || b.lastUsed == best.lastUsed && b.id < best.id {
			best = b
		}
	}
	if best == nil {
		return ""
	}
	return best.id
}

func (r *ref) counts(k Key) (idle, total int) {
	for _, b := range r.live() {
		if b.key == k {
			total++
			if !b.busy {
				idle++
			}
		}
	}
	return
}

func TestModelAgainstReference(t *testing.T) {
	for _, reuse := range []Reuse{ReuseOldest, ReuseMostRecent} {
		for seed := uint64(0); seed < 40; seed++ {
			runModel(t, reuse, seed)
		}
	}
}

func runModel(t *testing.T, reuse Reuse, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(reuse)))
	def := time.Duration(1+rng.IntN(60)) * sec
	p := New(Config{Reuse: reuse, TTL: def})
	m := &ref{reuse: reuse, def: def}
	var keys []Key
	for i := 0; i < 4; i++ {
		keys = append(keys, Key{Account: fmt.Sprint("acct", i%2), Function: fmt.Sprint("fn", i), Version: "1"})
	}
	var now time.Duration
	next := 0
	for step := 0; step < 3000; step++ {
		// Time often stands still, so ties on LastUsed and deadlines happen.
		if rng.IntN(3) == 0 {
			now += time.Duration(rng.IntN(5000)) * time.Millisecond
		}
		k := keys[rng.IntN(len(keys))]
		ctx := fmt.Sprintf("reuse %d seed %d step %d", reuse, seed, step)
		switch op := rng.IntN(100); {
		case op < 30: // invoke: warm if possible, else cold start
			got, want := p.Acquire(k), m.acquire(k)
			if (got == nil) != (want == "") || got != nil && got.ID != want {
				t.Fatalf("%s: Acquire = %v, reference %q", ctx, got, want)
			}
			if got == nil {
				next++
				id := fmt.Sprintf("sb%05d", next)
				var ttlv time.Duration
				if rng.IntN(3) == 0 {
					ttlv = time.Duration(1+rng.IntN(30)) * sec
				}
				p.Add(id, k, now, ttlv)
				m.add(id, k, now, ttlv, false, false)
			}
		case op < 35: // provisioned concurrency pre-warms
			next++
			id := fmt.Sprintf("pc%05d", next)
			p.AddIdle(id, k, now, Forever, true)
			m.add(id, k, now, Forever, true, true)
		case op < 60: // an invocation ends
			var busy []*refBox
			for _, b := range m.live() {
				if b.busy {
					busy = append(busy, b)
				}
			}
			if len(busy) > 0 {
				b := busy[rng.IntN(len(busy))]
				p.Release(p.Get(b.id), now)
				b.busy, b.lastUsed = false, now
			}
		case op < 75: // keep-alive sweep
			if at, ok := m.nextExpiry(); ok && rng.IntN(2) == 0 {
				now = max(now, at) // jump to the next deadline, like a timer would
			}
			var got []string
			n := p.Expire(now, func(s *Sandbox) { got = append(got, s.ID) })
			want := m.expire(now)
			if n != len(got) || !slices.Equal(got, want) {
				t.Fatalf("%s: Expire(%v) = %d %v, reference %v", ctx, now, n, got, want)
			}
		case op < 85: // reclaim the LRU sandbox of an account
			acct := k.Account
			match := func(k Key) bool { return k.Account == acct }
			got, want := p.LeastRecentlyUsed(match), m.lru(match)
			if (got == nil) != (want == "") || got != nil && got.ID != want {
				t.Fatalf("%s: LRU = %v, reference %q", ctx, got, want)
			}
			if got != nil {
				if !p.Remove(got) {
					t.Fatalf("%s: Remove LRU failed", ctx)
				}
				m.drop(want)
			}
		default: // the worker loses a sandbox (crash, deploy), busy or idle
			live := m.live()
			if len(live) > 0 {
				b := live[rng.IntN(len(live))]
				if !p.Remove(p.Get(b.id)) {
					t.Fatalf("%s: Remove %s failed", ctx, b.id)
				}
				m.drop(b.id)
			}
		}
		// Compare the observable state.
		gotAt, gotOK := p.NextExpiry()
		wantAt, wantOK := m.nextExpiry()
		if gotAt != wantAt || gotOK != wantOK {
			t.Fatalf("%s: NextExpiry = %v %v, reference %v %v", ctx, gotAt, gotOK, wantAt, wantOK)
		}
		idle, busy := 0, 0
		for _, k := range keys {
			gi, gt := p.Counts(k)
			wi, wt := m.counts(k)
			if gi != wi || gt != wt {
				t.Fatalf("%s: Counts(%v) = %d/%d, reference %d/%d", ctx, k, gi, gt, wi, wt)
			}
			idle += wi
			busy += wt - wi
		}
		if p.Idle() != idle || p.Busy() != busy || p.Len() != idle+busy {
			t.Fatalf("%s: Idle/Busy/Len = %d/%d/%d, reference %d/%d", ctx, p.Idle(), p.Busy(), p.Len(), idle, busy)
		}
		if step%50 == 0 {
			checkInvariants(t, p)
		}
	}
	checkInvariants(t, p)
}

// ---------------------------------------------------------------------------
// Benchmark: a worker holding 1k idle sandboxes over 100 keys serves warm
// invocations (Acquire + Release) and runs its keep-alive sweep.

func BenchmarkAcquireRelease(b *testing.B) {
	const n, nkeys = 1000, 100
	for _, reuse := range []Reuse{ReuseOldest, ReuseMostRecent} {
		b.Run(map[Reuse]string{ReuseOldest: "oldest", ReuseMostRecent: "mostrecent"}[reuse], func(b *testing.B) {
			p := New(Config{Reuse: reuse, TTL: 10 * time.Minute})
			keys := make([]Key, nkeys)
			for i := range keys {
				keys[i] = Key{Account: "111111111111", Function: fmt.Sprint("fn", i), Version: "1", Digest: "sha256:x"}
			}
			for i := 0; i < n; i++ {
				p.AddIdle(fmt.Sprint("sb", i), keys[i%nkeys], time.Duration(i), 0, i%10 == 0)
			}
			now := time.Duration(n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				now += time.Microsecond
				s := p.Acquire(keys[i%nkeys])
				if s == nil {
					b.Fatal("no idle sandbox")
				}
				p.Release(s, now)
				if i%1024 == 0 {
					p.Expire(now, nil)
				}
			}
			if p.Len() != n || p.Idle() != n {
				b.Fatalf("pool changed size: %d", p.Len())
			}
		})
	}
}

func TestReleaseForSetsThisIdlePeriodsKeepAlive(t *testing.T) {
	p := newPool(t, ReuseOldest)
	s := busy(p, "s", keyA, 0)
	p.ReleaseFor(s, 10*sec, time.Minute)
	if next, ok := p.NextExpiry(); !ok || next != 10*sec+time.Minute {
		t.Fatalf("next expiry %v %v, want 70s", next, ok)
	}
	if p.Expire(10*sec+time.Minute-1, nil) != 0 || p.Expire(10*sec+time.Minute, nil) != 1 {
		t.Fatal("the keep-alive given at release was not the one applied")
	}
	idle := p.AddIdle("idle", keyA, 0, 0, false)
	p.ReleaseFor(idle, sec, time.Second) // not busy: ignored
	if idle.TTL != ttl {
		t.Fatalf("ReleaseFor changed an idle sandbox's TTL to %v", idle.TTL)
	}
}
