package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coldstart-dev/coldstart/quota"
)

var testIndex uint64

func mustApply(t *testing.T, l *Ledger, ty CmdType, body any) any {
	t.Helper()
	b, _ := json.Marshal(body)
	testIndex++ // Raft indexes are unique and increasing
	v, err := l.Apply(ty, b, testIndex)
	if err != nil {
		t.Fatalf("apply %d: %v", ty, err)
	}
	return v
}

func grant(t *testing.T, l *Ledger, id, fn string, now time.Duration, release ...string) *Grant {
	t.Helper()
	return mustApply(t, l, CmdCreateSandbox, CreateSandbox{ID: id, Account: "a", Function: fn, Version: "$LATEST", Now: int64(now), Release: release}).(*Grant)
}

func newTestLedger(t *testing.T, limit int, rate quota.Rate) *Ledger {
	l := NewLedger(rate, 1000)
	mustApply(t, l, CmdRegisterWorker, Worker{ID: "w1", Capacity: 100})
	mustApply(t, l, CmdRegisterWorker, Worker{ID: "w2", Capacity: 100})
	mustApply(t, l, CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: limit})
	for _, f := range []string{"f", "g"} {
		mustApply(t, l, CmdCreateFunction, Function{Account: "a", Name: f, MemoryMB: 128, TimeoutMs: 3000})
	}
	return l
}

func TestLedgerEnforcesAccountLimitAndReclaimScope(t *testing.T) {
	l := newTestLedger(t, 3, quota.Rate{})
	for i, id := range []string{"s1", "s2", "s3"} {
		if g := grant(t, l, id, "f", time.Duration(i)); g.Sandbox == nil {
			t.Fatalf("grant %s refused: %+v", id, g)
		}
	}
	g := grant(t, l, "s4", "g", 5)
	if g.Sandbox != nil || g.Reason != quota.ReasonAccountConcurrency || g.Reclaim != quota.ScopeUnreserved {
		t.Fatalf("at the limit: %+v", g)
	}
	// With a victim released in the same command, the grant fits.
	g = grant(t, l, "s4", "g", 6, "s1")
	if g.Sandbox == nil || l.AccountSandboxes("a") != 3 {
		t.Fatalf("reclaim grant: %+v, sandboxes %d", g, l.AccountSandboxes("a"))
	}
	// Retried request with the same id: same answer, applied once.
	if g2 := grant(t, l, "s4", "g", 7); g2.Sandbox == nil || g2.Sandbox.Worker != g.Sandbox.Worker || l.AccountSandboxes("a") != 3 {
		t.Fatalf("retry not idempotent: %+v", g2)
	}
}

func TestLedgerSpreadsAcrossWorkersAndReleasesDeadOnes(t *testing.T) {
	l := newTestLedger(t, 100, quota.Rate{})
	per := map[string]int{}
	for i := 0; i < 10; i++ {
		g := grant(t, l, "s"+string(rune('a'+i)), "f", 0)
		per[g.Sandbox.Worker]++
	}
	if per["w1"] != 5 || per["w2"] != 5 {
		t.Fatalf("spread %v, want 5/5", per)
	}
	released := mustApply(t, l, CmdWorkerDead, WorkerDead{ID: "w1"}).([]string)
	if len(released) != 5 || l.AccountSandboxes("a") != 5 {
		t.Fatalf("dead worker released %d, account holds %d", len(released), l.AccountSandboxes("a"))
	}
	if g := grant(t, l, "new", "f", 0); g.Sandbox.Worker != "w2" {
		t.Fatalf("granted on dead worker %s", g.Sandbox.Worker)
	}
}

func TestLedgerReservedConcurrency(t *testing.T) {
	l := newTestLedger(t, 200, quota.Rate{})
	if _, err := l.Apply(CmdSetReserved, mustJSON(SetReserved{Account: "a", Name: "f", Reserved: intp(101)}), 2); !errors.Is(err, quota.ErrInvalidParameter) {
		t.Fatalf("reserving past the unreserved floor: %v", err)
	}
	mustApply(t, l, CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: intp(2)})
	grant(t, l, "r1", "f", 0)
	grant(t, l, "r2", "f", 0)
	if g := grant(t, l, "r3", "f", 0); g.Reason != quota.ReasonReservedConcurrency || g.Reclaim != quota.ScopeFunction {
		t.Fatalf("reserved cap: %+v", g)
	}
	// Removing the reservation re-labels nothing: the two sandboxes stay in
	// the pool that admitted them and count against the account only.
	mustApply(t, l, CmdSetReserved, SetReserved{Account: "a", Name: "f"})
	if a, _ := l.Usage("a", "f"); a.Unreserved != 0 || a.Sandboxes != 2 || a.ReservedTotal != 0 {
		t.Fatalf("after unreserve: %+v", a)
	}
	// Deleting a reserved function keeps its sandboxes counted until released.
	mustApply(t, l, CmdSetReserved, SetReserved{Account: "a", Name: "f", Reserved: intp(5)})
	mustApply(t, l, CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f"})
	if l.AccountSandboxes("a") != 2 {
		t.Fatalf("delete dropped running sandboxes from the count")
	}
	mustApply(t, l, CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{"r1", "r2"}})
	if a, _ := l.Usage("a", "g"); a.Sandboxes != 0 || a.Unreserved != 0 {
		t.Fatalf("counts after release: %+v", a)
	}
}

func TestLedgerScalingRate(t *testing.T) {
	l := newTestLedger(t, 1000, quota.Rate{Burst: 2, Window: time.Second})
	grant(t, l, "a1", "f", 0)
	grant(t, l, "a2", "f", 0)
	if g := grant(t, l, "a3", "f", 0); g.Reason != quota.ReasonFunctionRate {
		t.Fatalf("rate: %+v", g)
	}
	if g := grant(t, l, "a3", "f", time.Duration(500*time.Millisecond)); g.Sandbox == nil {
		t.Fatalf("refilled token refused: %+v", g)
	}
}

func TestLedgerReconcile(t *testing.T) {
	l := newTestLedger(t, 100, quota.Rate{})
	grant(t, l, "old", "f", 0)
	grant(t, l, "young", "f", time.Duration(9*time.Second))
	w := l.State().Sandboxes["old"].Worker
	l.State().Sandboxes["young"].Worker = w // both on one worker for the test
	l.load(*l.State())
	g := mustApply(t, l, CmdReconcileWorker, ReconcileWorker{Worker: w, Present: []string{"ghost"}, Now: int64(10 * time.Second), GraceNs: int64(5 * time.Second)}).(*Grant)
	if len(g.Dropped) != 1 || g.Dropped[0] != "ghost" {
		t.Fatalf("unknown sandbox not named for dropping: %+v", g)
	}
	if _, ok := l.State().Sandboxes["old"]; ok {
		t.Fatal("a grant missing from its worker past the grace was kept")
	}
	if _, ok := l.State().Sandboxes["young"]; !ok {
		t.Fatal("a grant inside the grace period was released")
	}
}

func TestUnknownCommands(t *testing.T) {
	l := NewLedger(quota.Rate{}, 0)
	if _, err := l.Apply(CmdType(42), []byte(`{}`), 1); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := l.Apply(CmdType(42)|IgnoreUnknown, []byte(`{}`), 1); err != nil {
		t.Fatalf("ignorable type: %v", err)
	}
	if _, err := l.Apply(CmdCreateSandbox, []byte(`{not json`), 1); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("garbage body: %v", err)
	}
}

func TestSnapshotRestoreAndCorruptSnapshot(t *testing.T) {
	f := NewFSM(quota.DefaultRate, 0)
	apply := func(ty CmdType, body any) {
		b, _ := Encode(ty, body)
		if r := f.Apply(&raft.Log{Index: 1, Data: b}).(Result); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	apply(CmdRegisterWorker, Worker{ID: "w1"})
	apply(CmdCreateFunction, Function{Account: "a", Name: "f", MemoryMB: 128, TimeoutMs: 1000, Reserved: intp(3)})
	apply(CmdCreateSandbox, CreateSandbox{ID: "s1", Account: "a", Function: "f", Now: 1})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(quota.DefaultRate, 0)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	g.Read(func(l *Ledger) {
		if l.FunctionSandboxes("a", "f") != 1 || l.AccountSandboxes("a") != 1 {
			t.Fatalf("restored counts wrong: fn %d acct %d", l.FunctionSandboxes("a", "f"), l.AccountSandboxes("a"))
		}
		if _, fn := l.Usage("a", "f"); !fn.HasReserved || fn.Reserved != 3 {
			t.Fatalf("restored reservation: %+v", fn)
		}
	})
	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte(`{"accounts": [garbage`)))); err == nil {
		t.Fatal("corrupt snapshot accepted")
	}
	g.Read(func(l *Ledger) {
		if l.AccountSandboxes("a") != 1 {
			t.Fatal("a rejected snapshot changed the state")
		}
	})
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func intp(n int) *int { return &n }

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// FuzzLedgerApply feeds arbitrary log entries to the ledger: it must return
// an error or a result, never panic, and keep its counts consistent.
func FuzzLedgerApply(f *testing.F) {
	for _, seed := range [][]byte{
		append([]byte{byte(CmdCreateSandbox)}, mustJSON(CreateSandbox{ID: "x", Account: "a", Function: "f"})...),
		append([]byte{byte(CmdCreateFunction)}, mustJSON(Function{Account: "a", Name: "f", Reserved: intp(1)})...),
		append([]byte{byte(CmdSetReserved)}, `{"account":"a","name":"f","reserved":-5}`...),
		append([]byte{byte(CmdReconcileWorker)}, `{"worker":"w1","present":["x","y"],"now":-1}`...),
		append([]byte{byte(CmdReleaseSandboxes)}, `{"ids":null}`...),
		{0xff, '{', '}'},
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, entry []byte) {
		l := newFuzzLedger()
		ty, body, err := Decode(entry)
		if err != nil {
			return
		}
		l.Apply(ty, body, 2)
		l.Apply(CmdCreateSandbox, mustJSON(CreateSandbox{ID: "after", Account: "a", Function: "f"}), 3)
		if d := l.Accounting().Diff(l.Recount()); d != "" {
			t.Fatalf("incremental counts differ from a recount:\n%s", d)
		}
	})
}

func newFuzzLedger() *Ledger {
	l := NewLedger(quota.Rate{}, 10)
	l.Apply(CmdRegisterWorker, mustJSON(Worker{ID: "w1"}), 1)
	l.Apply(CmdCreateFunction, mustJSON(Function{Account: "a", Name: "f", MemoryMB: 128, TimeoutMs: 1000}), 1)
	return l
}

func TestLedgerCancelledGrantIsRefused(t *testing.T) {
	l := newTestLedger(t, 10, quota.Rate{})
	// The gateway gave up and cancelled before its request reached the FSM.
	mustApply(t, l, CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{"late"}, Now: int64(time.Second)})
	if g := grant(t, l, "late", "f", time.Second); g.Sandbox != nil || g.Err != ErrCancelled {
		t.Fatalf("late grant of a cancelled id: %+v", g)
	}
	if l.AccountSandboxes("a") != 0 {
		t.Fatal("a cancelled grant holds capacity")
	}
	// A granted id released normally is not remembered; old cancels expire.
	grant(t, l, "ok", "f", 0)
	mustApply(t, l, CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{"ok"}, Now: int64(2 * time.Second)})
	if _, kept := l.State().Cancelled["ok"]; kept {
		t.Fatal("a released grant was remembered as cancelled")
	}
	mustApply(t, l, CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{"other"}, Now: int64(2 * time.Minute)})
	if _, kept := l.State().Cancelled["late"]; kept {
		t.Fatal("cancelled ids are never forgotten")
	}
}
