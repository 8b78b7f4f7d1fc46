package worker

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// fakePlacement answers the leader subject and remembers released ids.
type fakePlacement struct {
	mu       sync.Mutex
	released []string
	dropped  []string // named back on reconcile
	recons   int
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

type harness struct {
	nc   *nats.Conn
	w    *Node
	fake *fakePlacement
}

func newHarness(t *testing.T, keep time.Duration) *harness {
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := natsutil.Connect(natsutil.URL(ns), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	fake := &fakePlacement{}
	nc.Subscribe(placement.SubjectLeader, func(m *nats.Msg) {
		var req placement.Request
		json.Unmarshal(m.Data, &req)
		fake.mu.Lock()
		grant := &placement.Grant{}
		switch req.Op {
		case placement.OpRelease:
			fake.released = append(fake.released, req.Release...)
		case placement.OpReconcile:
			fake.recons++
			grant.Dropped = fake.dropped
		}
		fake.mu.Unlock()
		b, _ := json.Marshal(placement.Response{Grant: grant})
		m.Respond(b)
	})
	w, err := Start(Config{ID: "w1", NATS: nc, Placement: placement.NewClient(nc, time.Second), KeepAlive: keep, ReconcileEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return &harness{nc: nc, w: w, fake: fake}
}

var testKey = pool.Key{Account: "123456789012", Function: "f", Version: "$LATEST"}

func spec(d, timeout time.Duration) string {
	return EncodeSpec(Spec{Runtime: "synthetic", MemoryMB: 128, TimeoutMs: timeout.Milliseconds(), Profile: synthetic.Profile{Duration: synthetic.FixedDist(d)}})
}

func (h *harness) send(t *testing.T, subject, sandbox, specHdr, payload string) *nats.Msg {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Header.Set(HdrRequestID, "req")
	m.Header.Set(HdrAccount, testKey.Account)
	m.Header.Set(HdrFunction, testKey.Function)
	m.Header.Set(HdrVersion, testKey.Version)
	m.Header.Set(HdrSpec, specHdr)
	if sandbox != "" {
		m.Header.Set(HdrSandbox, sandbox)
	}
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
	r := h.send(t, InvokeSubject("w1"), "sb1", spec(time.Millisecond, time.Second), `{}`)
	if r.Header.Get(HdrStatus) != StatusOK || r.Header.Get(HdrCold) != "true" {
		t.Fatalf("cold: %v", r.Header)
	}
	// The worker now subscribes to the warm subject; the next request reuses sb1.
	waitFor(t, "warm subscription", func() bool {
		m, err := h.nc.Request(WarmSubject(testKey), nil, 50*time.Millisecond)
		_ = m
		return err == nil || !strings.Contains(err.Error(), "no responders")
	})
	r = h.send(t, WarmSubject(testKey), "", spec(time.Millisecond, time.Second), `{}`)
	if r.Header.Get(HdrStatus) != StatusOK || r.Header.Get(HdrCold) != "false" || r.Header.Get(HdrSandbox) != "sb1" {
		t.Fatalf("warm: %v", r.Header)
	}
	// Idle past its keep-alive: evicted, released to placement, and the warm
	// subject has no responders again.
	waitFor(t, "eviction", func() bool { return h.fake.has("sb1") && h.w.Stats().Idle == 0 })
	if _, err := h.nc.Request(WarmSubject(testKey), nil, time.Second); err != nats.ErrNoResponders {
		t.Fatalf("warm subject after eviction: %v", err)
	}
}

func TestTimeoutResetsSandbox(t *testing.T) {
	h := newHarness(t, time.Minute)
	r := h.send(t, InvokeSubject("w1"), "sb1", spec(time.Second, 50*time.Millisecond), `{}`)
	if r.Header.Get(HdrFuncError) != "Unhandled" || !strings.Contains(string(r.Data), "Sandbox.Timedout") || !strings.Contains(string(r.Data), "Task timed out after 0.05 seconds") {
		t.Fatalf("timeout answer: %v %s", r.Header, r.Data)
	}
	waitFor(t, "reset sandbox released", func() bool { return h.fake.has("sb1") && h.w.Stats().Idle == 0 })
}

func TestRetireNeverTakesABusySandbox(t *testing.T) {
	h := newHarness(t, time.Minute)
	done := make(chan *nats.Msg)
	go func() { done <- h.send(t, InvokeSubject("w1"), "busy", spec(300*time.Millisecond, time.Second), `{}`) }()
	waitFor(t, "busy sandbox", func() bool { return h.w.Stats().Busy == 1 })
	b, _ := json.Marshal(placement.RetireRequest{ID: "busy", Query: placement.IdleQuery{Account: testKey.Account, Scope: 2}})
	m, err := h.nc.Request(placement.WorkerSubject("w1", "retire"), b, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var a placement.RetireAnswer
	json.Unmarshal(m.Data, &a)
	if a.OK {
		t.Fatal("retired a busy sandbox")
	}
	<-done
	m, _ = h.nc.Request(placement.WorkerSubject("w1", "retire"), b, time.Second)
	json.Unmarshal(m.Data, &a)
	if !a.OK || a.ID != "busy" {
		t.Fatalf("idle sandbox not retired: %+v", a)
	}
}

func TestGarbageIsAnsweredAndTheWorkerKeepsServing(t *testing.T) {
	h := newHarness(t, time.Minute)
	r := h.send(t, InvokeSubject("w1"), "sb1", `{not json`, `{}`)
	if r.Header.Get(HdrStatus) != StatusError || r.Header.Get(HdrErrorType) != "InvalidRequestContentException" {
		t.Fatalf("bad spec: %v", r.Header)
	}
	r = h.send(t, InvokeSubject("w1"), "", spec(0, time.Second), `{}`)
	if r.Header.Get(HdrStatus) != StatusError {
		t.Fatalf("cold invoke without sandbox id: %v", r.Header)
	}
	for _, subj := range []string{"idle", "retire"} {
		if _, err := h.nc.Request(placement.WorkerSubject("w1", subj), []byte("\x00garbage"), time.Second); err != nil {
			t.Fatalf("%s with garbage: %v", subj, err)
		}
	}
	r = h.send(t, InvokeSubject("w1"), "ok", spec(0, time.Second), `{"duration_ms": 2, "fail": "boom"}`)
	if r.Header.Get(HdrStatus) != StatusOK || r.Header.Get(HdrFuncError) != "Unhandled" || !strings.Contains(string(r.Data), "boom") {
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
		c.m = map[string]*Spec{}
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
		sp := &Spec{Profile: synthetic.Profile{Duration: synthetic.FixedDist(time.Millisecond)}}
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
	sub, _ := h.nc.Subscribe(SubjectRecords, func(m *nats.Msg) { mu.Lock(); got = append(got, SplitRecords(m.Data)...); mu.Unlock() })
	defer sub.Unsubscribe()
	h.nc.Flush()
	sp := EncodeSpec(Spec{Runtime: "synthetic", MemoryMB: 1024, TimeoutMs: 1000, Profile: synthetic.Profile{}.WithColdStart(20 * time.Millisecond)})
	r := h.send(t, InvokeSubject("w1"), "sb1", sp, `{"duration_ms": 10.2}`)
	billed, _ := strconv.Atoi(r.Header.Get(HdrBilledMs))
	initMs, _ := strconv.ParseFloat(r.Header.Get(HdrInitMs), 64)
	dur, _ := strconv.ParseFloat(r.Header.Get(HdrDurMs), 64)
	if initMs != 20 || dur < 10.2 || float64(billed) < initMs+dur || float64(billed) >= initMs+dur+1 {
		t.Fatalf("init %.2f duration %.2f billed %d: want billed = ceil(init + duration)", initMs, dur, billed)
	}
	waitFor(t, "record", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	rec := got[0]
	if rec.BilledMs != int64(billed) || rec.GBs != float64(billed)/1000 || !rec.Cold || rec.Sandbox != "sb1" || rec.EndNs <= rec.StartNs {
		t.Fatalf("record %+v", rec)
	}
}

// TestPausedWorkerFencesItself: after a pause longer than its fence time a
// worker starts nothing on its existing sandboxes until placement has
// confirmed which are still its own; one placement released meanwhile is
// dropped, and the others serve again.
func TestPausedWorkerFencesItself(t *testing.T) {
	h := newHarness(t, time.Minute)
	for _, id := range []string{"kept", "released"} {
		if r := h.send(t, InvokeSubject("w1"), id, spec(time.Millisecond, time.Second), `{}`); r.Header.Get(HdrStatus) != StatusOK {
			t.Fatalf("cold %s: %v", id, r.Header)
		}
	}
	h.fake.mu.Lock()
	h.fake.dropped = []string{"released"} // placement gave its slot away during the pause
	before := h.fake.recons
	h.fake.mu.Unlock()
	// A pause: the fence clock stops for longer than the fence time.
	h.w.fence.lastNs.Store(time.Now().Add(-2 * DefaultFenceAfter).UnixNano())
	r := h.send(t, WarmSubject(testKey), "", "", `{}`)
	if r.Header.Get(HdrStatus) != StatusBusy {
		t.Fatalf("a fenced worker ran a warm invocation: %v", r.Header)
	}
	waitFor(t, "reconcile after the pause", func() bool {
		h.fake.mu.Lock()
		defer h.fake.mu.Unlock()
		// The ticker has run since the pause (it re-fences on seeing the
		// gap) and a reconcile has lifted the fence after it.
		fresh := time.Since(time.Unix(0, h.w.fence.lastNs.Load())) < DefaultFenceAfter/2
		return h.fake.recons > before && fresh && !h.w.fence.fenced.Load()
	})
	for i := 0; i < 3; i++ {
		r = h.send(t, WarmSubject(testKey), "", "", `{}`)
		if r.Header.Get(HdrStatus) != StatusOK || r.Header.Get(HdrSandbox) != "kept" {
			t.Fatalf("after reconcile: %v (the released sandbox must be gone)", r.Header)
		}
	}
	if st := h.w.Stats(); st.Idle+st.Busy != 1 {
		t.Fatalf("pool holds %d sandboxes, want 1", st.Idle+st.Busy)
	}
}
