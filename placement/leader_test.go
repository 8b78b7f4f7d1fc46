package placement

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// fakeWorkers is the leader's view of the workers in these tests: it
// records every request and retires what it is told to.
type fakeWorkers struct {
	mu      sync.Mutex
	retires []wire.RetireRequest
	drops   map[string][]string
	refuse  bool
	busy    map[string]bool // sandboxes a drop finds running
	// slow makes every retire request take that long; inFlight and
	// maxInFlight count the requests answered at once.
	slow                  time.Duration
	inFlight, maxInFlight int
	// idleLeft are idle sandboxes the worker did not report, which probes
	// find, least recently used first.
	idleLeft []string
}

func (f *fakeWorkers) Retire(worker string, req wire.RetireRequest, timeout time.Duration) (wire.RetireAnswer, error) {
	if f.slow > 0 {
		f.mu.Lock()
		f.inFlight++
		if f.inFlight > f.maxInFlight {
			f.maxInFlight = f.inFlight
		}
		f.mu.Unlock()
		time.Sleep(f.slow) // the worker's answer takes this long
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retires = append(f.retires, req)
	if req.ID == "" && len(f.idleLeft) > 0 {
		// A probe: the worker's least recently used idle sandbox.
		id := f.idleLeft[0]
		f.idleLeft = f.idleLeft[1:]
		return wire.RetireAnswer{OK: true, ID: id}, nil
	}
	if f.refuse || req.ID == "" {
		// A probe (no id): this fake worker has nothing idle beyond what
		// it reported.
		return wire.RetireAnswer{}, nil
	}
	return wire.RetireAnswer{OK: true, ID: req.ID}, nil
}

func (f *fakeWorkers) Drop(worker string, ids []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drops == nil {
		f.drops = map[string][]string{}
	}
	f.drops[worker] = append(f.drops[worker], ids...)
	busy := 0
	for _, id := range ids {
		if f.busy[id] {
			busy++
		}
	}
	return busy, nil
}

func (f *fakeWorkers) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.retires)
}

// leaderWith starts a one-node placement cluster whose workers are fw, with
// an account limit, two functions and one registered worker.
func leaderWith(t *testing.T, fw *fakeWorkers, limit int) *Node {
	t.Helper()
	n, err := startSingleWith(t, t.TempDir(), func(c *Config) { c.Workers = fw })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	deadline := time.Now().Add(5 * time.Second)
	for !n.isServing() {
		if time.Now().After(deadline) {
			t.Fatal("the single node never started serving as leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := n.apply(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: limit}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"f", "g"} {
		if _, err := n.apply(CmdCreateFunction, Function{Account: "a", Name: f, MemoryMB: 128, TimeoutMs: 3000}); err != nil {
			t.Fatal(err)
		}
	}
	if resp, ok := n.renew("w1", wire.Renew{Seq: 1, Capacity: 100}); !ok || resp.Lease == nil {
		t.Fatalf("register w1: %+v", resp)
	}
	return n
}

func (n *Node) grantFor(t *testing.T, id, fn string) *Grant {
	t.Helper()
	resp := n.createSandbox(CreateSandbox{ID: id, Account: "a", Function: fn, Version: "$LATEST"})
	if resp.Error != nil || resp.Grant == nil {
		t.Fatalf("create_sandbox %s: %+v", id, resp)
	}
	return resp.Grant
}

func (n *Node) reportIdle(worker string, entries ...wire.IdleEntry) {
	var inc uint64
	n.fsm.Read(func(l *Ledger) { inc = l.s.Workers[worker].Incarnation })
	keys := map[string]*wire.KeyIdle{}
	r := wire.IdleReport{Incarnation: inc, Full: true}
	for _, e := range entries {
		k := keys[e.Function]
		if k == nil {
			k = &wire.KeyIdle{Account: e.Account, Function: e.Function, Version: e.Version}
			keys[e.Function] = k
		}
		k.Count++
		k.Idle = append(k.Idle, e)
	}
	for _, k := range keys {
		r.Keys = append(r.Keys, *k)
	}
	n.leases.setIdle(worker, r)
}

func idle(id, fn string, lastUsed int64) wire.IdleEntry {
	return wire.IdleEntry{ID: id, Account: "a", Function: fn, Version: "$LATEST", LastUsedNs: lastUsed}
}

// At the limit, the least recently used idle sandbox of another function
// is retired for the new one, in one request to its worker; a retried
// request with the same id retires nothing more.
func TestLeaderReclaimsOnceAndRetriesRetireNothing(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 2)
	n.grantFor(t, "g1", "g")
	n.grantFor(t, "g2", "g")
	n.reportIdle("w1", idle("g1", "g", 20), idle("g2", "g", 10))
	g := n.grantFor(t, "f1", "f")
	if g.Sandbox == nil || fw.count() != 1 || fw.retires[0].ID != "g2" {
		t.Fatalf("reclaim: grant %+v, retire requests %+v (want one, for the LRU g2)", g, fw.retires)
	}
	again := n.grantFor(t, "f1", "f")
	if again.Sandbox == nil || *again.Sandbox != *g.Sandbox || fw.count() != 1 {
		t.Fatalf("retry: %+v, retire requests %d (want the same sandbox and no new retire)", again, fw.count())
	}
	n.Read(func(l *Ledger) {
		if l.AccountSandboxes("a") != 2 {
			t.Fatalf("account holds %d sandboxes, want 2", l.AccountSandboxes("a"))
		}
	})
}

// An idle sandbox of the very function and version asking is never
// reclaimed for it: the caller is sent back to the warm path.
func TestLeaderSendsItsOwnFunctionBackToWarm(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 2)
	n.grantFor(t, "f1", "f")
	n.grantFor(t, "g1", "g")
	n.reportIdle("w1", idle("f1", "f", 10), idle("g1", "g", 5))
	g := n.grantFor(t, "f2", "f")
	if !g.Warm || g.Sandbox != nil || fw.count() != 0 {
		t.Fatalf("own idle sandbox at the limit: %+v, %d retire requests (want warm, none)", g, fw.count())
	}
}

// With nothing idle, throttles cost at most one probe per worker per
// probeQuiet, however many there are: no fan-out per 429.
func TestLeaderThrottlesWithoutFanOut(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 1)
	n.grantFor(t, "g1", "g")
	start := time.Now()
	const throttles = 200
	for i := 0; i < throttles; i++ {
		g := n.grantFor(t, "f"+strconv.Itoa(i), "f")
		if g.Reason != quota.ReasonAccountConcurrency || g.Sandbox != nil {
			t.Fatalf("throttle %d: %+v", i, g)
		}
	}
	bound := 1 + int(time.Since(start)/probeQuiet)
	if fw.count() > bound || fw.count() >= throttles {
		t.Fatalf("%d throttles asked the worker %d times, want at most %d", throttles, fw.count(), bound)
	}
}

// Concurrent reclaims that find nothing in the view share one probe of the
// worker rather than queueing one each behind its answer: under overload a
// queue of identical probes made every throttle wait for all the ones
// before it.
func TestConcurrentReclaimsShareOneProbe(t *testing.T) {
	fw := &fakeWorkers{slow: 30 * time.Millisecond}
	n := leaderWith(t, fw, 1)
	n.grantFor(t, "g1", "g")
	const throttles = 40
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < throttles; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp := n.createSandbox(CreateSandbox{ID: "f" + strconv.Itoa(i), Account: "a", Function: "f", Version: "$LATEST"})
			if resp.Grant == nil || resp.Grant.Reason != quota.ReasonAccountConcurrency || resp.Grant.Sandbox != nil {
				t.Errorf("throttle %d: %+v", i, resp)
			}
		}(i)
	}
	wg.Wait()
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.maxInFlight != 1 {
		t.Errorf("%d probes of one worker in flight at once, want 1", fw.maxInFlight)
	}
	// Each probe is shared by the throttles that arrive while it runs, so
	// their number follows the time taken, not the number of throttles.
	if bound := 1 + int(time.Since(start)/fw.slow); len(fw.retires) > bound || len(fw.retires) >= throttles {
		t.Errorf("%d concurrent throttles asked the worker %d times, want at most %d", throttles, len(fw.retires), bound)
	}
}

// A worker that had an idle sandbox for the probe in flight may have more:
// a reclaim that waited for it asks again rather than throttling.
func TestReclaimAfterASharedProbeAsksAgain(t *testing.T) {
	fw := &fakeWorkers{slow: 20 * time.Millisecond}
	fw.idleLeft = []string{"g1", "g2"}
	n := leaderWith(t, fw, 2)
	n.grantFor(t, "g1", "g")
	n.grantFor(t, "g2", "g")
	var wg sync.WaitGroup
	grants := make([]*Grant, 2)
	for i := range grants {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp := n.createSandbox(CreateSandbox{ID: "f" + strconv.Itoa(i), Account: "a", Function: "f", Version: "$LATEST"})
			grants[i] = resp.Grant
		}(i)
	}
	wg.Wait()
	for i, g := range grants {
		if g == nil || g.Sandbox == nil {
			t.Fatalf("reclaim %d with an idle sandbox left on the worker: %+v", i, g)
		}
	}
	n.fsm.Read(func(l *Ledger) {
		if l.AccountSandboxes("a") != 2 {
			t.Fatalf("account holds %d sandboxes, want 2", l.AccountSandboxes("a"))
		}
	})
}

// A report from an incarnation the ledger has left behind is ignored.
func TestLeaderIgnoresIdleReportsOfAStaleIncarnation(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 1)
	n.grantFor(t, "g1", "g")
	var inc uint64
	n.fsm.Read(func(l *Ledger) { inc = l.s.Workers["w1"].Incarnation })
	n.leases.setIdle("w1", wire.IdleReport{Full: true}) // what a current report of nothing idle says
	stale := wire.IdleReport{Incarnation: inc - 1, Full: true, Keys: []wire.KeyIdle{{Account: "a", Function: "g", Version: "$LATEST", Count: 1, Idle: []wire.IdleEntry{idle("g1", "g", 1)}}}}
	n.onIdleReport("w1", stale)
	if g := n.grantFor(t, "f1", "f"); g.Sandbox != nil {
		t.Fatalf("a stale report was used: %+v", g)
	}
	for _, r := range fw.retires {
		if r.ID == "g1" {
			t.Fatal("the stale report's sandbox was asked for by id")
		}
	}
}

// Lowering a limit asks the workers to drop exactly the excess.
func TestLeaderTrimsTheExcess(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 3)
	for _, id := range []string{"s1", "s2", "s3"} {
		n.grantFor(t, id, "f")
	}
	if _, err := n.apply(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: 1}); err != nil {
		t.Fatal(err)
	}
	n.trim("a")
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if got := fw.drops["w1"]; len(got) != 2 {
		t.Fatalf("trim asked w1 to drop %v, want the 2 newest", got)
	}
}

// When the excess is still running, the sandbox kept would take new
// requests while it drains: trim drops the whole group over its cap, so
// that new invocations wait for placement. Groups within their caps keep
// their sandboxes.
func TestLeaderTrimDrainingDropsTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cut   func(n *Node) error
		busy  []string
		want  []string
		extra string // a sandbox that must never be dropped
	}{
		{name: "reservation, excess idle", busy: nil, want: []string{"s2", "s3"}, extra: "g1",
			cut: func(n *Node) error {
				_, err := n.apply(CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: intp(1)})
				return err
			}},
		{name: "reservation, excess busy", busy: []string{"s3"}, want: []string{"s1", "s2", "s3"}, extra: "g1",
			cut: func(n *Node) error {
				_, err := n.apply(CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: intp(1)})
				return err
			}},
		{name: "account limit, excess busy", busy: []string{"g1"}, want: []string{"g1", "s1", "s2", "s3"},
			cut: func(n *Node) error {
				_, err := n.apply(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: 2})
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw := &fakeWorkers{busy: map[string]bool{}}
			for _, id := range tc.busy {
				fw.busy[id] = true
			}
			n := leaderWith(t, fw, 200)
			for _, id := range []string{"s1", "s2", "s3"} {
				n.grantFor(t, id, "f")
			}
			n.grantFor(t, "g1", "g")
			if err := tc.cut(n); err != nil {
				t.Fatal(err)
			}
			n.trim("a")
			fw.mu.Lock()
			defer fw.mu.Unlock()
			got := map[string]bool{}
			for _, id := range fw.drops["w1"] {
				got[id] = true
			}
			for _, id := range tc.want {
				if !got[id] {
					t.Errorf("trim did not drop %s: dropped %v", id, fw.drops["w1"])
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("trim dropped %v, want %v", fw.drops["w1"], tc.want)
			}
			if tc.extra != "" && got[tc.extra] {
				t.Errorf("trim dropped %s, of a function within its cap", tc.extra)
			}
		})
	}
}

// With a grant key, every grant carries a token that verifies for exactly
// that sandbox on that worker incarnation.
func TestLeaderSignsGrants(t *testing.T) {
	key := []byte("k")
	n, err := startSingleWith(t, t.TempDir(), func(c *Config) { c.GrantKey = key; c.Workers = &fakeWorkers{} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	for deadline := time.Now().Add(5 * time.Second); !n.isServing(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never served")
		}
	}
	if _, err := n.apply(CmdCreateFunction, Function{Account: "a", Name: "f", MemoryMB: 128, TimeoutMs: 3000}); err != nil {
		t.Fatal(err)
	}
	n.renew("w1", wire.Renew{Seq: 1, Capacity: 10})
	g := n.grantFor(t, "s1", "f")
	sb := g.Sandbox
	claim := wire.GrantClaim{ID: sb.ID, Account: sb.Account, Function: sb.Function, Version: sb.Version, Worker: sb.Worker, WorkerInc: sb.WorkerInc, CreatedNs: sb.CreatedNs}
	if !wire.VerifyGrant(key, claim, g.Token) {
		t.Fatalf("grant token does not verify: %+v", g)
	}
	claim.WorkerInc++
	if wire.VerifyGrant(key, claim, g.Token) {
		t.Fatal("the token verifies for another worker incarnation")
	}
}

// A leader whose request pool is full answers at once with a retryable
// ServiceException instead of queueing without bound.
func TestLeaderAnswersBusyWhenItsPoolIsFull(t *testing.T) {
	n, err := startSingleWith(t, t.TempDir(), func(c *Config) { c.MaxInFlight = 1; c.Workers = &fakeWorkers{} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	for deadline := time.Now().Add(5 * time.Second); !n.isServing(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never served")
		}
	}
	c := NewClient(n.nc, time.Second)
	if _, err := c.Do(context.Background(), wire.Request{Op: wire.OpSnapshot}); err != nil {
		t.Fatalf("with room: %v", err)
	}
	n.sem <- struct{}{} // the pool's one slot is taken
	defer func() { <-n.sem }()
	start := time.Now()
	resp, err := c.Do(context.Background(), wire.Request{Op: wire.OpSnapshot})
	if !errors.Is(err, wire.ErrUnavailable) || resp.Error == nil || resp.Error.Type != "ServiceException" || !strings.Contains(resp.Error.Message, "busy") {
		t.Fatalf("full pool answered %+v, %v", resp, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("busy answer took %s", took)
	}
}

// A leader that was not running (its watch loop missed ticks) answers no
// renewal before it has verified it still leads: renewals queued during a
// pause must not be answered by a leader deposed meanwhile.
func TestLeaderVerifiesBeforeRenewingAfterAStall(t *testing.T) {
	n := leaderWith(t, &fakeWorkers{}, 5)
	if _, ok := n.renew("w1", wire.Renew{Seq: 2, Capacity: 100, Incarnation: 0}); !ok {
		t.Fatal("a healthy leader did not answer a renewal")
	}
	n.lastTick.Store(time.Now().Add(-time.Second).UnixNano()) // as after a SIGSTOP
	n.raft.Shutdown().Error()                                 // and it leads no more
	if resp, ok := n.renew("w1", wire.Renew{Seq: 3, Capacity: 100}); ok {
		t.Fatalf("a stalled node answered a renewal without verifying: %+v", resp)
	}
}
