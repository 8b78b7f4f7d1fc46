package worker

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natstest"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// fakePlacement answers a worker's own subjects (renew, release,
// reconcile) and remembers released ids. It grants leases of ttl under
// incarnation inc, unless silent.
type fakePlacement struct {
	mu       sync.Mutex
	released []string
	dropped  []string // named back on reconcile
	recons   int
	renewals int
	inc      uint64
	ttl      time.Duration
	silent   bool
}

func (f *fakePlacement) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.released {
		if r == id {
			return true
		}
	}
	return false
}

func (f *fakePlacement) set(fn func(f *fakePlacement)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type harness struct {
	nc   *nats.Conn
	w    *Node
	fake *fakePlacement
	// ops is the fake placement's subscription; subscribeOps makes it
	// anew after a test dropped it (no leader: "no responders").
	ops          *nats.Subscription
	subscribeOps func()
}

type harnessOpt func(*Config, *fakePlacement)

func withLease(ttl time.Duration) harnessOpt {
	return func(c *Config, f *fakePlacement) { f.ttl = ttl; c.RenewEvery = ttl / 4 }
}

func newHarness(t *testing.T, keep time.Duration, opts ...harnessOpt) *harness {
	nc := natstest.Conn(t)
	fake := &fakePlacement{inc: 7, ttl: 2 * time.Second}
	cfg := Config{ID: "w1", NATS: nc, Placement: placement.NewClient(nc, time.Second), KeepAlive: keep, ReconcileEvery: time.Hour}
	for _, o := range opts {
		o(&cfg, fake)
	}
	h := &harness{nc: nc, fake: fake}
	handle := func(m *nats.Msg) {
		var req wire.Request
		json.Unmarshal(m.Data, &req)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		resp := wire.Response{Grant: &wire.Grant{}}
		switch {
		case m.Subject == wire.WorkerOpSubject("w1", wire.OpRelease):
			fake.released = append(fake.released, req.Release...)
		case m.Subject == wire.WorkerOpSubject("w1", wire.OpReconcile):
			fake.recons++
			resp.Grant.Dropped = fake.dropped
		case m.Subject == wire.WorkerOpSubject("w1", wire.OpRenew):
			if fake.silent {
				return
			}
			fake.renewals++
			resp.Lease = &wire.Lease{Seq: req.Renew.Seq, Incarnation: fake.inc, TTLNs: int64(fake.ttl)}
		default:
			return
		}
		b, _ := json.Marshal(resp)
		m.Respond(b)
	}
	h.subscribeOps = func() {
		sub, err := nc.Subscribe(wire.SubjectWorkerOps, handle)
		if err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		h.ops = sub
	}
	h.subscribeOps()
	w, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	h.w = w
	waitFor(t, "a lease", func() bool { ok, _ := w.mayStart(time.Now()); return ok })
	return h
}

var testKey = pool.Key{Account: "000000000000", Function: "f", Version: "$LATEST"}

func spec(d, timeout time.Duration) string {
	return wire.EncodeSpec(wire.Spec{Runtime: "synthetic", MemoryMB: 128, TimeoutMs: timeout.Milliseconds(), Profile: synthetic.Profile{Duration: synthetic.FixedDist(d)}})
}

func (h *harness) send(t *testing.T, subject, sandbox, specHdr, payload string) *nats.Msg {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Header.Set(wire.HdrRequestID, "req")
	m.Header.Set(wire.HdrAccount, testKey.Account)
	m.Header.Set(wire.HdrFunction, testKey.Function)
	m.Header.Set(wire.HdrVersion, testKey.Version)
	m.Header.Set(wire.HdrSpec, specHdr)
	if sandbox != "" {
		m.Header.Set(wire.HdrSandbox, sandbox)
	}
	h.fake.mu.Lock()
	m.Header.Set(wire.HdrWorkerInc, strconv.FormatUint(h.fake.inc, 10))
	h.fake.mu.Unlock()
	m.Data = []byte(payload)
	r, err := h.nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestColdThenWarmReuseThenKeepAliveEviction(t *testing.T) {
	h := newHarness(t, 300*time.Millisecond)
	r := h.send(t, wire.InvokeSubject("w1"), "sb1", spec(time.Millisecond, time.Second), `{}`)
	if r.Header.Get(wire.HdrStatus) != wire.StatusOK || r.Header.Get(wire.HdrCold) != "true" {
		t.Fatalf("cold: %v", r.Header)
	}
	// The worker now subscribes to the warm subject; the next request reuses sb1.
	waitFor(t, "warm subscription", func() bool {
		m, err := h.nc.Request(warmSubject(testKey), nil, 50*time.Millisecond)
		_ = m
		return err == nil || !strings.Contains(err.Error(), "no responders")
	})
	r = h.send(t, warmSubject(testKey), "", spec(time.Millisecond, time.Second), `{}`)
	if r.Header.Get(wire.HdrStatus) != wire.StatusOK || r.Header.Get(wire.HdrCold) != "false" || r.Header.Get(wire.HdrSandbox) != "sb1" {
		t.Fatalf("warm: %v", r.Header)
	}
	// Idle past its keep-alive: evicted, released to placement, and the warm
	// subject has no responders again.
	waitFor(t, "eviction", func() bool { return h.fake.has("sb1") && h.w.Stats().Idle == 0 })
	if _, err := h.nc.Request(warmSubject(testKey), nil, time.Second); err != nats.ErrNoResponders {
		t.Fatalf("warm subject after eviction: %v", err)
	}
}

func TestTimeoutResetsSandbox(t *testing.T) {
	h := newHarness(t, time.Minute)
	r := h.send(t, wire.InvokeSubject("w1"), "sb1", spec(time.Second, 50*time.Millisecond), `{}`)
	if r.Header.Get(wire.HdrFuncError) != "Unhandled" || !strings.Contains(string(r.Data), "Sandbox.Timedout") || !strings.Contains(string(r.Data), "Task timed out after 0.05 seconds") {
		t.Fatalf("timeout answer: %v %s", r.Header, r.Data)
	}
	waitFor(t, "reset sandbox released", func() bool { return h.fake.has("sb1") && h.w.Stats().Idle == 0 })
}

func TestRetireNeverTakesABusySandbox(t *testing.T) {
	h := newHarness(t, time.Minute)
	done := make(chan *nats.Msg)
	go func() {
		done <- h.send(t, wire.InvokeSubject("w1"), "busy", spec(300*time.Millisecond, time.Second), `{}`)
	}()
	waitFor(t, "busy sandbox", func() bool { return h.w.Stats().Busy == 1 })
	b, _ := json.Marshal(wire.RetireRequest{ID: "busy", Query: wire.IdleQuery{Account: testKey.Account, Scope: 2}})
	m, err := h.nc.Request(wire.WorkerSubject("w1", wire.WorkerRetire), b, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var a wire.RetireAnswer
	json.Unmarshal(m.Data, &a)
	if a.OK {
		t.Fatal("retired a busy sandbox")
	}
	<-done
	m, _ = h.nc.Request(wire.WorkerSubject("w1", wire.WorkerRetire), b, time.Second)
	json.Unmarshal(m.Data, &a)
	if !a.OK || a.ID != "busy" {
		t.Fatalf("idle sandbox not retired: %+v", a)
	}
}

func TestGarbageIsAnsweredAndTheWorkerKeepsServing(t *testing.T) {
	h := newHarness(t, time.Minute)
	r := h.send(t, wire.InvokeSubject("w1"), "sb1", `{not json`, `{}`)
	if r.Header.Get(wire.HdrStatus) != wire.StatusError || r.Header.Get(wire.HdrErrorType) != "InvalidRequestContentException" {
		t.Fatalf("bad spec: %v", r.Header)
	}
	r = h.send(t, wire.InvokeSubject("w1"), "", spec(0, time.Second), `{}`)
	if r.Header.Get(wire.HdrStatus) != wire.StatusError {
		t.Fatalf("cold invoke without sandbox id: %v", r.Header)
	}
	for _, subj := range []string{wire.WorkerRetire, wire.WorkerDrop, wire.WorkerStats} {
		if _, err := h.nc.Request(wire.WorkerSubject("w1", subj), []byte("\x00garbage"), time.Second); err != nil {
			t.Fatalf("%s with garbage: %v", subj, err)
		}
	}
	r = h.send(t, wire.InvokeSubject("w1"), "ok", spec(0, time.Second), `{"duration_ms": 2, "fail": "boom"}`)
	if r.Header.Get(wire.HdrStatus) != wire.StatusOK || r.Header.Get(wire.HdrFuncError) != "Unhandled" || !strings.Contains(string(r.Data), "boom") {
		t.Fatalf("function error: %v %s", r.Header, r.Data)
	}
}

func FuzzSpecHeader(f *testing.F) {
	f.Add(spec(80*time.Millisecond, time.Second))
	f.Add(`{"profile":{"duration":{"kind":"lognormal","a":1,"sigma":1e308}}}`)
	f.Add(`{"timeout_ms":-1}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, raw string) {
		var c specCache
		c.m = map[string]*wire.Spec{}
		s, err := c.get(raw)
		if err != nil {
			return
		}
		n := &Node{}
		n.rnd = newRand()
		inv := n.plan(s, []byte(`{"duration_ms": 1}`))
		if inv.duration < 0 {
			t.Fatalf("negative duration %v", inv.duration)
		}
		if d := s.Profile.Duration.Draw(n.rnd); d < 0 {
			t.Fatalf("negative draw %v", d)
		}
	})
}

func FuzzSyntheticPayload(f *testing.F) {
	for _, p := range []string{`{}`, `{"duration_ms": 80}`, `{"duration_ms": 1e300}`, `{"duration_ms": -1, "fail": "x"}`, `{"duration_ms": "80"}`, `not json "duration_ms"`, `{"fail": {"nested": 1}}`} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		n := &Node{rnd: newRand()}
		sp := &wire.Spec{Profile: synthetic.Profile{Duration: synthetic.FixedDist(time.Millisecond)}}
		inv := n.plan(sp, payload)
		if inv.duration < 0 || inv.duration > maxDurationMs*time.Millisecond {
			t.Fatalf("payload %q gave duration %v", payload, inv.duration)
		}
	})
}

func TestReportLinesFollowLambdasFormat(t *testing.T) {
	r := api.Record{RequestID: "8f5d-1", Version: "$LATEST", DurationMs: 80.456, BilledMs: 261, InitMs: 180, Cold: true}
	got := reportLines(r, 512, false, 0)
	want := "START RequestId: 8f5d-1 Version: $LATEST\n" +
		"END RequestId: 8f5d-1\n" +
		"REPORT RequestId: 8f5d-1\tDuration: 80.46 ms\tBilled Duration: 261 ms\tMemory Size: 512 MB\tMax Memory Used: 512 MB\tInit Duration: 180.00 ms\t\n"
	if got != want {
		t.Fatalf("report lines:\n%q\nwant\n%q", got, want)
	}
	r.Cold = false
	if strings.Contains(reportLines(r, 512, false, 0), "Init Duration") {
		t.Fatal("a warm invocation reported an Init Duration")
	}
	if !strings.Contains(reportLines(r, 512, true, 3*time.Second), "Task timed out after 3.00 seconds") {
		t.Fatal("timeout line missing")
	}
}

func TestBilledIncludesInitAndRoundsUp(t *testing.T) {
	h := newHarness(t, time.Minute)
	var got []api.Record
	var mu sync.Mutex
	sub, _ := h.nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) { mu.Lock(); got = append(got, wire.SplitRecords(m.Data)...); mu.Unlock() })
	defer sub.Unsubscribe()
	h.nc.Flush()
	sp := wire.EncodeSpec(wire.Spec{Runtime: "synthetic", MemoryMB: 1024, TimeoutMs: 1000, Profile: synthetic.Profile{}.WithColdStart(20 * time.Millisecond)})
	r := h.send(t, wire.InvokeSubject("w1"), "sb1", sp, `{"duration_ms": 10.2}`)
	billed, _ := strconv.Atoi(r.Header.Get(wire.HdrBilledMs))
	initMs, _ := strconv.ParseFloat(r.Header.Get(wire.HdrInitMs), 64)
	dur, _ := strconv.ParseFloat(r.Header.Get(wire.HdrDurMs), 64)
	if initMs != 20 || dur < 10.2 || float64(billed) < initMs+dur || float64(billed) >= initMs+dur+1 {
		t.Fatalf("init %.2f duration %.2f billed %d: want billed = ceil(init + duration)", initMs, dur, billed)
	}
	waitFor(t, "record", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	rec := got[0]
	if rec.BilledMs != int64(billed) || rec.GBs != float64(billed)/1000 || !rec.Cold || rec.Sandbox != "sb1" || rec.EndNs <= rec.StartNs {
		t.Fatalf("record %+v", rec)
	}
}

// lapsedWithSandbox is a worker with a 300 ms lease that cold-started
// sandbox id, then lost its lease: placement stopped answering renewals.
func lapsedWithSandbox(t *testing.T, id string) *harness {
	t.Helper()
	h := newHarness(t, time.Minute, withLease(300*time.Millisecond))
	if r := h.send(t, wire.InvokeSubject("w1"), id, spec(time.Millisecond, time.Second), `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusOK {
		t.Fatalf("cold: %v", r.Header)
	}
	h.fake.set(func(f *fakePlacement) { f.silent = true })
	waitFor(t, "the lease to run out", func() bool { ok, _ := h.w.mayStart(time.Now()); return !ok })
	return h
}

// TestNoLeaseNoInvocation: once placement stops answering renewals and
// the lease runs out by the worker's own clock, nothing starts, warm or
// cold; a renewal answered again brings the same sandboxes back.
func TestNoLeaseNoInvocation(t *testing.T) {
	h := lapsedWithSandbox(t, "kept")
	if r := h.send(t, warmSubject(testKey), "", "", `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusBusy {
		t.Fatalf("a worker without a lease ran a warm invocation: %v", r.Header)
	}
	if r := h.send(t, wire.InvokeSubject("w1"), "new", spec(time.Millisecond, time.Second), `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusBusy || r.Header.Get(wire.HdrErrorType) != "ServiceException" {
		t.Fatalf("a worker without a lease started a cold sandbox: %v", r.Header)
	}
	h.fake.set(func(f *fakePlacement) { f.silent = false })
	waitFor(t, "the lease back", func() bool { ok, _ := h.w.mayStart(time.Now()); return ok })
	if r := h.send(t, warmSubject(testKey), "", "", `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusOK || r.Header.Get(wire.HdrSandbox) != "kept" {
		t.Fatalf("same incarnation: the sandbox should serve again: %v", r.Header)
	}
}

// TestInvocationFencedAtLeaseExpiry: an invocation running when the lease
// runs out is killed, its result never delivered, and its record ends at
// the lease's expiry.
func TestInvocationFencedAtLeaseExpiry(t *testing.T) {
	h := newHarness(t, time.Minute, withLease(400*time.Millisecond))
	recs := make(chan api.Record, 16)
	sub, _ := h.nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		for _, r := range wire.SplitRecords(m.Data) {
			recs <- r
		}
	})
	defer sub.Unsubscribe()
	h.nc.Flush()
	done := make(chan *nats.Msg, 1)
	go func() { done <- h.send(t, wire.InvokeSubject("w1"), "long", spec(3*time.Second, 10*time.Second), `{}`) }()
	waitFor(t, "the invocation to run", func() bool { return h.w.Stats().Busy == 1 })
	h.fake.set(func(f *fakePlacement) { f.silent = true })
	expiry := h.w.lease.expiry()
	var r *nats.Msg
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer for a fenced invocation")
	}
	if r.Header.Get(wire.HdrStatus) != wire.StatusError || r.Header.Get(wire.HdrErrorType) != "ServiceException" || !strings.Contains(r.Header.Get(wire.HdrError), "fenced") {
		t.Fatalf("fenced invocation answered %v %q", r.Header, r.Data)
	}
	var rec api.Record
	select {
	case rec = <-recs:
	case <-time.After(5 * time.Second):
		t.Fatal("no record")
	}
	if rec.Outcome != api.OutcomeFenced || rec.Sandbox != "long" {
		t.Fatalf("record %+v", rec)
	}
	// The lease was extended by renewals until the fake went silent; the
	// record ends at the last lease's expiry, never later.
	if end := time.Unix(0, rec.EndNs); end.Before(expiry) || end.After(expiry.Add(time.Second)) || rec.ReleasedNs != rec.EndNs {
		t.Fatalf("fenced record ends %v, lease expiry %v", end, expiry)
	}
	if st := h.w.Stats(); st.Idle+st.Busy != 0 {
		t.Fatalf("the fenced sandbox is still pooled: %+v", st)
	}
}

// TestNewIncarnationVoidsSandboxes: when placement answers with another
// incarnation (it gave up on this worker), every sandbox is dropped and a
// grant for the old incarnation is refused.
func TestNewIncarnationVoidsSandboxes(t *testing.T) {
	h := newHarness(t, time.Minute, withLease(400*time.Millisecond))
	if r := h.send(t, wire.InvokeSubject("w1"), "old", spec(time.Millisecond, time.Second), `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusOK {
		t.Fatalf("cold: %v", r.Header)
	}
	h.fake.set(func(f *fakePlacement) { f.inc = 8 })
	waitFor(t, "the new incarnation", func() bool { return h.w.lease.incarnation() == 8 && h.w.Stats().Idle == 0 })
	m := nats.NewMsg(wire.InvokeSubject("w1"))
	for k, v := range map[string]string{wire.HdrRequestID: "r", wire.HdrAccount: testKey.Account, wire.HdrFunction: testKey.Function, wire.HdrVersion: testKey.Version, wire.HdrSpec: spec(0, time.Second), wire.HdrSandbox: "stale", wire.HdrWorkerInc: "7"} {
		m.Header.Set(k, v)
	}
	r, err := h.nc.RequestMsg(m, 5*time.Second)
	if err != nil || r.Header.Get(wire.HdrStatus) != wire.StatusBusy || h.w.Stats().Idle+h.w.Stats().Busy != 0 {
		t.Fatalf("grant for the old incarnation: %v %v (want busy, nothing started)", err, r)
	}
	// A grant for a newer incarnation than the worker knows makes it renew
	// at once, and it learns the incarnation well before its next period.
	h.fake.set(func(f *fakePlacement) { f.inc = 9; f.renewals = 0 })
	m.Header.Set(wire.HdrWorkerInc, "9")
	m.Header.Set(wire.HdrSandbox, "newer")
	if r, err := h.nc.RequestMsg(m, 5*time.Second); err != nil || r.Header.Get(wire.HdrStatus) != wire.StatusBusy {
		t.Fatalf("grant for a newer incarnation: %v %v", err, r)
	}
	waitFor(t, "the newer incarnation", func() bool { return h.w.lease.incarnation() == 9 })
}

// TestColdStartNeedsPlacementsSignature: with a grant key, only a grant
// placement signed starts a sandbox.
func TestColdStartNeedsPlacementsSignature(t *testing.T) {
	key := []byte("grant-key")
	h := newHarness(t, time.Minute, func(c *Config, f *fakePlacement) { c.GrantKey = key })
	send := func(id, token string) *nats.Msg {
		m := nats.NewMsg(wire.InvokeSubject("w1"))
		for k, v := range map[string]string{wire.HdrRequestID: "r", wire.HdrAccount: testKey.Account, wire.HdrFunction: testKey.Function, wire.HdrVersion: testKey.Version, wire.HdrSpec: spec(0, time.Second), wire.HdrSandbox: id, wire.HdrWorkerInc: "7", wire.HdrGranted: "42", wire.HdrGrantToken: token} {
			m.Header.Set(k, v)
		}
		r, err := h.nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := send("forged", "00"); r.Header.Get(wire.HdrErrorType) != "AccessDeniedException" {
		t.Fatalf("forged grant answered %v", r.Header)
	}
	good := wire.GrantToken(key, &wire.Sandbox{ID: "real", Account: testKey.Account, Function: testKey.Function, Version: testKey.Version, Worker: "w1", WorkerInc: 7, CreatedNs: 42})
	if r := send("real", good); r.Header.Get(wire.HdrStatus) != wire.StatusOK {
		t.Fatalf("signed grant answered %v", r.Header)
	}
	if r := send("other", good); r.Header.Get(wire.HdrErrorType) != "AccessDeniedException" {
		t.Fatalf("a token replayed for another sandbox answered %v", r.Header)
	}
}

// TestLeaseGenerations covers the lease clock alone: a lapse noticed by a
// later renewal still fences what started before it.
func TestLeaseGenerations(t *testing.T) {
	var l lease
	t0 := time.Now()
	seq, _ := l.next()
	l.renewed(seq, t0, 5, time.Second)
	ok, gen := l.valid(t0.Add(100 * time.Millisecond))
	if !ok {
		t.Fatal("fresh lease not valid")
	}
	// A pause: the next renewal is sent after the expiry and answered.
	seq, _ = l.next()
	l.renewed(seq, t0.Add(3*time.Second), 5, time.Second)
	if ok, g := l.valid(t0.Add(3100 * time.Millisecond)); !ok || g == gen {
		t.Fatalf("after the renewal: valid %v, generation %d (was %d)", ok, g, gen)
	}
	if held, at := l.holds(gen, t0.Add(3200*time.Millisecond)); held || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("an invocation started before the lapse: held %v, ends %v (want the old expiry)", held, at)
	}
	// An answer to an older renewal extends nothing.
	old, _ := l.next()
	seq, _ = l.next()
	if l.renewed(old, t0.Add(10*time.Second), 5, time.Hour); l.expiry().After(t0.Add(5 * time.Second)) {
		t.Fatal("a stale answer extended the lease")
	}
	_ = seq
}

// TestNoLeaderExtendsOnlyALiveLease: "no responders" (no placement leader)
// keeps a valid lease going, but never brings back one that ran out: a
// leader may have released the worker during the lapse and be gone since.
func TestNoLeaderExtendsOnlyALiveLease(t *testing.T) {
	var l lease
	t0 := time.Now()
	seq, _ := l.next()
	l.renewed(seq, t0, 5, time.Second)
	seq, _ = l.next()
	l.extendWithoutLeader(seq, t0.Add(500*time.Millisecond))
	if ok, _ := l.valid(t0.Add(1400 * time.Millisecond)); !ok {
		t.Fatal("a live lease was not extended while no leader serves")
	}
	// Partitioned: nothing answered for longer than the lease.
	seq, _ = l.next()
	l.extendWithoutLeader(seq, t0.Add(3*time.Second))
	if ok, _ := l.valid(t0.Add(3100 * time.Millisecond)); ok {
		t.Fatal("no responders revived a lapsed lease")
	}
	// An answered renewal does.
	seq, _ = l.next()
	l.renewed(seq, t0.Add(3200*time.Millisecond), 5, time.Second)
	if ok, _ := l.valid(t0.Add(3300 * time.Millisecond)); !ok {
		t.Fatal("an answered renewal did not bring the lease back")
	}
}

// TestLapsedWorkerWaitsForALeader: a worker whose lease ran out while
// placement did not answer, and which then finds no leader at all, starts
// nothing on its sandboxes until a leader answers, and voids them when the
// answer names a new incarnation.
func TestLapsedWorkerWaitsForALeader(t *testing.T) {
	h := lapsedWithSandbox(t, "old")
	// The leader that released the worker meanwhile steps down: renewals
	// now meet no responders.
	h.ops.Unsubscribe()
	h.nc.Flush()
	h.fake.set(func(f *fakePlacement) { f.silent = false; f.inc = 8; f.renewals = 0 })
	renewals := func() uint64 { h.w.lease.mu.Lock(); defer h.w.lease.mu.Unlock(); return h.w.lease.seq }
	from := renewals()
	waitFor(t, "renewals without a leader", func() bool {
		if r := h.tryWarm(t); r != nil && r.Header.Get(wire.HdrStatus) == wire.StatusOK {
			t.Fatalf("a lapsed worker ran a warm invocation without a leader: %v", r.Header)
		}
		return renewals() >= from+4
	})
	h.fake.set(func(f *fakePlacement) {
		if f.renewals != 0 {
			t.Fatalf("%d renewals reached the fake that stepped down", f.renewals)
		}
	})
	h.subscribeOps()
	waitFor(t, "the new incarnation", func() bool { return h.w.lease.incarnation() == 8 && h.w.Stats().Idle == 0 })
	if r := h.tryWarm(t); r != nil && r.Header.Get(wire.HdrStatus) == wire.StatusOK {
		t.Fatalf("a sandbox of the old incarnation served: %v", r.Header)
	}
}

// tryWarm sends a warm invocation; nil means no worker offered a sandbox
// (no responders).
func (h *harness) tryWarm(t *testing.T) *nats.Msg {
	t.Helper()
	m := nats.NewMsg(warmSubject(testKey))
	for k, v := range map[string]string{wire.HdrRequestID: "req", wire.HdrAccount: testKey.Account, wire.HdrFunction: testKey.Function, wire.HdrVersion: testKey.Version} {
		m.Header.Set(k, v)
	}
	r, err := h.nc.RequestMsg(m, 5*time.Second)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNoWarmStartBetweenNewIncarnationAndVoiding: when a worker whose lease
// lapsed learns it has a new incarnation, no warm request may start on a
// sandbox of the old one, even while requests keep arriving.
func TestNoWarmStartBetweenNewIncarnationAndVoiding(t *testing.T) {
	h := newHarness(t, time.Minute, withLease(300*time.Millisecond))
	var recs []api.Record
	var mu sync.Mutex
	sub, _ := h.nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) { mu.Lock(); recs = append(recs, wire.SplitRecords(m.Data)...); mu.Unlock() })
	defer sub.Unsubscribe()
	h.nc.Flush()
	var cold sync.WaitGroup
	for _, id := range []string{"old1", "old2", "old3"} {
		m := nats.NewMsg(wire.InvokeSubject("w1"))
		for k, v := range map[string]string{wire.HdrRequestID: "c", wire.HdrAccount: testKey.Account, wire.HdrFunction: testKey.Function, wire.HdrVersion: testKey.Version, wire.HdrSpec: spec(50*time.Millisecond, time.Second), wire.HdrSandbox: id, wire.HdrWorkerInc: "7"} {
			m.Header.Set(k, v)
		}
		cold.Add(1)
		go func() { defer cold.Done(); h.nc.RequestMsg(m, 5*time.Second) }()
	}
	cold.Wait()
	waitFor(t, "three idle sandboxes", func() bool { return h.w.Stats().Idle == 3 })
	h.fake.set(func(f *fakePlacement) { f.silent = true })
	waitFor(t, "the lease to lapse", func() bool { ok, _ := h.w.mayStart(time.Now()); return !ok })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := nats.NewMsg(wire.WarmSubject(testKey.Account, testKey.Function, testKey.Version))
				m.Header.Set(wire.HdrRequestID, "warm")
				h.nc.RequestMsg(m, time.Second) // answered, busy or no responders: it came
				served.Add(1)
			}
		}()
	}
	var answered time.Time
	h.fake.set(func(f *fakePlacement) { f.inc = 8; f.silent = false; answered = time.Now() })
	waitFor(t, "the new incarnation", func() bool { return h.w.lease.incarnation() == 8 })
	after := served.Load()
	waitFor(t, "requests answered past the switch", func() bool { return served.Load() > after+50 })
	close(stop)
	wg.Wait()
	h.w.records.Flush()
	mu.Lock()
	defer mu.Unlock()
	for _, r := range recs {
		if strings.HasPrefix(r.Sandbox, "old") && !r.Cold && time.Unix(0, r.StartNs).After(answered) {
			t.Fatalf("warm invocation on %s started %s after placement answered with a new incarnation", r.Sandbox, time.Unix(0, r.StartNs).Sub(answered))
		}
	}
}

// TestTimeScaleCompressesKeepAlive: --time-scale is about every platform
// delay: a 30 s keep-alive at scale 100 evicts an idle sandbox after 0.3 s.
func TestTimeScaleCompressesKeepAlive(t *testing.T) {
	h := newHarness(t, 30*time.Second, func(c *Config, _ *fakePlacement) { c.TimeScale = 100 })
	t0 := time.Now()
	if r := h.send(t, wire.InvokeSubject("w1"), "sb1", spec(time.Millisecond, time.Second), `{}`); r.Header.Get(wire.HdrStatus) != wire.StatusOK {
		t.Fatalf("cold: %v", r.Header)
	}
	waitFor(t, "eviction", func() bool { return h.fake.has("sb1") && h.w.Stats().Idle == 0 })
	if d := time.Since(t0); d < 250*time.Millisecond {
		t.Fatalf("evicted after %v, before the scaled keep-alive (300 ms)", d)
	}
}

// FuzzIdemKey: any payload and key path give a key or an error, never a
// panic; the same input always gives the same key.
func FuzzIdemKey(f *testing.F) {
	f.Add("json:order_id", []byte(`{"order_id":"o-1"}`))
	f.Add("json:a.b[0]", []byte(`{"a":{"b":[1,2]}}`))
	f.Add("json:[a,b]", []byte(`not json`))
	f.Add("header:X-Key", []byte(`{}`))
	f.Add("request-id", []byte(``))
	f.Fuzz(func(t *testing.T, key string, payload []byte) {
		m := nats.NewMsg("x")
		m.Header.Set(wire.HdrRequestID, "req-1")
		m.Data = payload
		cfg := &wire.IdempotencyConfig{Key: key, TTLMs: 1000}
		k1, err1 := idemKey(cfg, m)
		k2, err2 := idemKey(cfg, m)
		if k1 != k2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("idemKey(%q, %q) not deterministic: %q/%v then %q/%v", key, payload, k1, err1, k2, err2)
		}
	})
}

// TestRepeatedPrewarmAnswersTheFirstOutcome: placement asks again for a
// pre-warm whose outcome it could not commit (a leader change). A request
// that arrives while the init runs waits for it; one after it learns the
// sandbox is ready. Neither starts a second init or fails the sandbox.
func TestRepeatedPrewarmAnswersTheFirstOutcome(t *testing.T) {
	h := newHarness(t, time.Minute)
	init := 400 * time.Millisecond
	specHdr := wire.EncodeSpec(wire.Spec{Runtime: "synthetic", Synthetic: true, MemoryMB: 128, TimeoutMs: 3000, Profile: synthetic.Profile{SandboxCreate: synthetic.FixedDist(init)}})
	prewarm := func() *nats.Msg {
		return h.send(t, wire.WorkerSubject("w1", wire.WorkerPrewarm), "pc-1", specHdr, "")
	}
	type answer struct {
		took time.Duration
		m    *nats.Msg
	}
	answers := make(chan answer, 2)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			m := prewarm()
			answers <- answer{time.Since(start), m}
		}()
		if i == 0 {
			waitFor(t, "the first init to start", func() bool {
				select {
				case a := <-answers:
					t.Fatalf("the first pre-warm answered at once: %v", a.m.Header)
				default:
				}
				h.w.mu.Lock()
				defer h.w.mu.Unlock()
				return h.w.pool.Get("pc-1") != nil
			})
		}
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.m.Header.Get(wire.HdrStatus) != wire.StatusOK {
			t.Fatalf("pre-warm answered %v", a.m.Header)
		}
		if a.took < init/2 {
			t.Fatalf("a pre-warm answered after %v, before the init of %v could end", a.took, init)
		}
	}
	if m := prewarm(); m.Header.Get(wire.HdrStatus) != wire.StatusOK {
		t.Fatalf("pre-warm of a ready sandbox answered %v", m.Header)
	}
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	n := 0
	h.w.pool.Each(func(sb *pool.Sandbox) {
		n++
		if sb.ID != "pc-1" || !sb.Provisioned || sb.Busy {
			t.Errorf("sandbox %+v", sb)
		}
	})
	if n != 1 {
		t.Fatalf("%d sandboxes after three pre-warms of one", n)
	}
}
