package placement

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/coldstart-dev/coldstart/quota"
)

// Repro: grant a sandbox of f, delete f, recreate f with reserved
// concurrency 5, release the sandbox. A ledger that re-labelled sandboxes
// from the current configuration ended with an unreserved count of 1 after
// replay and 0 after a snapshot restore.
func TestRegressionReleaseAfterRecreateWithReservation(t *testing.T) {
	l := newTestLedger(t, 200, quota.Rate{})
	if g := grant(t, l, "s1", "f", 0); g.Sandbox == nil {
		t.Fatalf("grant: %+v", g)
	}
	mustApply(t, l, CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f"})
	mustApply(t, l, CmdCreateFunction, Function{Account: "a", Name: "f", MemoryMB: 128, TimeoutMs: 3000, Reserved: intp(5)})
	restored := restoreCopy(t, l)
	for name, led := range map[string]*Ledger{"replayed": l, "restored": restored} {
		mustApply(t, led, CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{"s1"}})
		if a, fn := led.Usage("a", "f"); a.Unreserved != 0 || a.Sandboxes != 0 || fn.Sandboxes != 0 {
			t.Fatalf("%s: counts after release: %+v %+v", name, a, fn)
		}
	}
	if l.Digest() != restored.Digest() {
		t.Fatalf("replayed and restored ledgers differ: %s vs %s", l.Digest(), restored.Digest())
	}
}

// A sandbox left from a deleted function never counts against the
// reservation of the function created again under its name.
func TestRegressionOldIncarnationDoesNotUseNewReservation(t *testing.T) {
	l := newTestLedger(t, 200, quota.Rate{})
	grant(t, l, "old", "f", 0)
	mustApply(t, l, CmdDeleteFunction, DeleteFunction{Account: "a", Name: "f"})
	mustApply(t, l, CmdCreateFunction, Function{Account: "a", Name: "f", MemoryMB: 128, TimeoutMs: 3000, Reserved: intp(1)})
	if g := grant(t, l, "new", "f", 1); g.Sandbox == nil || g.Sandbox.Pool != quota.PoolReserved {
		t.Fatalf("the new incarnation's reservation was taken by the old one: %+v", g)
	}
	if l.AccountSandboxes("a") != 2 {
		t.Fatalf("account holds %d, want both sandboxes", l.AccountSandboxes("a"))
	}
}

// Repro: a retried CreateSandbox whose id was already granted, carrying a
// victim the leader retired for it. The ledger answered with the earlier
// grant before releasing the victim, which stayed counted.
func TestRegressionRetriedGrantReleasesItsVictim(t *testing.T) {
	l := newTestLedger(t, 2, quota.Rate{})
	grant(t, l, "v", "g", 0)
	first := grant(t, l, "s", "f", 1)
	if first.Sandbox == nil {
		t.Fatalf("grant: %+v", first)
	}
	again := grant(t, l, "s", "f", 2, "v")
	if again.Sandbox == nil || *again.Sandbox != *first.Sandbox {
		t.Fatalf("retry answered %+v, first %+v", again, first)
	}
	if _, held := l.State().Sandboxes["v"]; held || l.AccountSandboxes("a") != 1 {
		t.Fatalf("the victim of a retried grant stays counted: %d sandboxes", l.AccountSandboxes("a"))
	}
}

// An id collision never hands one account another account's sandbox.
func TestRegressionIDCollisionAcrossAccounts(t *testing.T) {
	l := newTestLedger(t, 10, quota.Rate{})
	mustApply(t, l, CmdCreateFunction, Function{Account: "b", Name: "f", MemoryMB: 128, TimeoutMs: 3000})
	grant(t, l, "same", "f", 0)
	g := mustApply(t, l, CmdCreateSandbox, CreateSandbox{ID: "same", Account: "b", Function: "f", Version: "$LATEST"}).(*Grant)
	if g.Sandbox != nil || g.Err != ErrIDInUse {
		t.Fatalf("collision answered %+v", g)
	}
}

// Repro: {"sandboxes":{"x":null}} dereferenced nil inside Raft's restore.
func TestRegressionNullEntriesInSnapshot(t *testing.T) {
	for _, snap := range []string{
		`{"sandboxes":{"x":null}}`,
		`{"workers":{"w1":null}}`,
		`{"functions":{"a/f":null}}`,
		`{"accounts":{"a":null}}`,
		`{"buckets":{"a/f":null}}`,
		`{"sandboxes":{"x":{"id":"y","account":"a","function":"f","worker":"w1","pool":1}}}`,
		`{"sandboxes":{"x":{"id":"x","account":"a","function":"f","worker":"w1","pool":9}}}`,
		`{"functions":{"a/f":{"account":"a","name":"g"}}}`,
		`{"accounts":{"a":{"id":"a","limit":0}}}`,
		`[]`,
		`{"sandboxes":`,
	} {
		f := NewFSM(quota.Rate{}, 0)
		err := f.Restore(io.NopCloser(bytes.NewReader([]byte(snap))))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: restore answered %v, want ErrCorruptSnapshot", snap, err)
		}
	}
}

func restoreCopy(t *testing.T, l *Ledger) *Ledger {
	t.Helper()
	snap, err := (&FSM{l: l}).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(l.rate, l.defLimit)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	return g.l
}

// FuzzRestore feeds arbitrary snapshots to Restore: an error or a state
// that validates and works, never a panic.
func FuzzRestore(f *testing.F) {
	l := newFuzzLedger()
	l.Apply(CmdCreateSandbox, mustJSON(CreateSandbox{ID: "x", Account: "a", Function: "f"}), 5)
	good, _ := (&FSM{l: l}).Snapshot()
	sink := &memSink{}
	good.Persist(sink)
	f.Add(sink.Bytes())
	f.Add([]byte(`{"sandboxes":{"x":null}}`))
	f.Add([]byte(`{"workers":{"w1":{"id":"w1","capacity":-1}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := NewFSM(quota.Rate{}, 0)
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			return
		}
		fsm.Read(func(l *Ledger) {
			if d := l.Accounting().Diff(l.Recount()); d != "" {
				t.Fatalf("restored counts inconsistent: %s", d)
			}
			l.Digest()
		})
		// The restored ledger keeps working.
		for i, cmd := range [][]byte{
			mustJSON(Worker{ID: "w9"}),
			mustJSON(CreateSandbox{ID: "n", Account: "a", Function: "f", Now: 1}),
			mustJSON(ReleaseSandboxes{IDs: []string{"x", "n"}}),
			mustJSON(WorkerDead{ID: "w1"}),
		} {
			ty := []CmdType{CmdRegisterWorker, CmdCreateSandbox, CmdReleaseSandboxes, CmdWorkerDead}[i]
			fsm.l.Apply(ty, cmd, uint64(100+i))
		}
		fsm.l.Excess("a")
		fsm.l.pickWorker(128, []string{"w1"})
		if d := fsm.l.Accounting().Diff(fsm.l.Recount()); d != "" {
			t.Fatalf("counts inconsistent after commands: %s", d)
		}
	})
}
