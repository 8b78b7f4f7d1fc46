package placement

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// The ledger's invariants, checked over random sequences of every command
// (the bugs that matter here need several steps to show):
//
//  1. the incremental counts equal a recount from the live sandboxes;
//  2. a sandbox is granted only while its account, its pool and (for a
//     reserved function) its reservation have room, so right after a grant
//     none of them is over;
//  3. a grant id is applied at most once, and a retry gets the same sandbox;
//  4. victims named in a CreateSandbox never stay counted, retry or not;
//  5. snapshot-then-restore equals the replayed ledger, byte for byte, and
//     replaying the log from scratch gives the same state (determinism);
//  6. published versions are immutable and their numbers strictly
//     increase, never reused; publishing unchanged code and configuration
//     makes no new version;
//  7. every alias names published versions of its own function, with
//     weights in [0, 1]; a version an alias names cannot be deleted;
//  8. a write with a stale RevisionId changes nothing;
//  9. provisioned concurrency is only on published versions or aliases,
//     never above the function's reservation nor into the account's
//     unreserved floor, at most one config per version; provisioned
//     sandboxes are counted like any other (invariant 1) and a grant is
//     made only for a version that exists, with its current revision.

// source is where a sequence draws its choices: a seeded PRNG for the
// random test, the fuzzer's bytes for the fuzz target.
type source interface{ intn(n int) int }

type prng struct{ r *rand.Rand }

func (p prng) intn(n int) int { return p.r.IntN(n) }

type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) intn(n int) int {
	if s.i >= len(s.b) {
		return 0
	}
	v := int(s.b[s.i])
	s.i++
	return v % n
}

func (s *byteSource) done() bool { return s.i >= len(s.b) }

type entry struct {
	t    CmdType
	body []byte
}

// model drives a ledger with generated commands and checks it.
type model struct {
	t     testing.TB
	src   source
	l     *Ledger
	log   []entry
	idx   uint64
	ids   []string // grant ids in use (some granted, some not)
	nGen  int
	steps int
	// published remembers each version as first published, by
	// account/function/incarnation/version: it must never change.
	published map[string]string
	// lastNum is the highest version number seen per function incarnation.
	lastNum map[string]int
}

var (
	modelAccounts  = []string{"a", "b"}
	modelFunctions = []string{"f", "g", "h"}
	modelWorkers   = []string{"w1", "w2", "w3"}
	modelGateways  = []string{"gw1", "gw2"}
)

func newModel(t testing.TB, src source) *model {
	m := &model{t: t, src: src, l: NewLedger(quota.Rate{Burst: 40, Window: time.Second}, 1000), published: map[string]string{}, lastNum: map[string]int{}}
	// A small account (no reservations fit under Lambda's floor, except
	// 0) and one just above the floor, so that limits are reached.
	m.apply(CmdSetAccountLimit, SetAccountLimit{Account: "a", Limit: 4})
	m.apply(CmdSetAccountLimit, SetAccountLimit{Account: "b", Limit: 120})
	for _, w := range modelWorkers {
		m.apply(CmdRegisterWorker, Worker{ID: w, Capacity: 60})
	}
	for _, a := range modelAccounts {
		for _, f := range modelFunctions {
			m.apply(CmdCreateFunction, Function{Account: a, Name: f, MemoryMB: 128, TimeoutMs: 3000})
		}
	}
	return m
}

func (m *model) pick(xs []string) string { return xs[m.src.intn(len(xs))] }

func (m *model) now() int64 { return int64(m.idx) * int64(10*time.Millisecond) }

func (m *model) apply(t CmdType, body any) any {
	b, err := json.Marshal(body)
	if err != nil {
		m.t.Fatal(err)
	}
	return m.applyRaw(t, b)
}

func (m *model) applyRaw(t CmdType, b []byte) any {
	m.idx++
	m.log = append(m.log, entry{t, b})
	v, _ := m.l.Apply(t, b, m.idx)
	return v
}

func (m *model) liveOf(account string) []string {
	var ids []string
	for id, sb := range m.l.s.Sandboxes {
		if sb.Account == account {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (m *model) anyLive() string {
	var ids []string
	for id := range m.l.s.Sandboxes {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return "none"
	}
	sort.Strings(ids)
	return ids[m.src.intn(len(ids))]
}

func (m *model) workerInc(w string) uint64 {
	if wk := m.l.s.Workers[w]; wk != nil {
		return wk.Incarnation
	}
	return 0
}

// step applies one random command and checks the invariants.
func (m *model) step() {
	m.steps++
	switch op := m.src.intn(30); {
	case op >= 20:
		m.controlStep(op - 20)
	case op < 8: // CreateSandbox: a new id, or a retry, with or without victims
		acct, fn := m.pick(modelAccounts), m.pick(modelFunctions)
		id := ""
		if len(m.ids) > 0 && m.src.intn(4) == 0 {
			id = m.ids[m.src.intn(len(m.ids))] // a retry or a collision
		} else {
			m.nGen++
			id = fmt.Sprintf("s%d", m.nGen)
			m.ids = append(m.ids, id)
		}
		var victims []string
		if live := m.liveOf(acct); len(live) > 0 && m.src.intn(3) == 0 {
			victims = []string{live[m.src.intn(len(live))]}
		}
		var avoid []string
		if m.src.intn(3) == 0 {
			avoid = []string{m.pick(modelWorkers)}
		}
		c := CreateSandbox{ID: id, Account: acct, Function: fn, Version: m.pickVersion(acct, fn), Now: m.now(), Release: victims, Requester: m.pick(modelGateways), Avoid: avoid}
		if m.src.intn(4) == 0 {
			c.Provisioned, c.Version, c.Requester = true, m.provisionedVersion(acct, fn), ""
		}
		m.grant(c)
	case op < 10: // a worker releases (its own, or another's by mistake)
		w := m.pick(modelWorkers)
		inc := m.workerInc(w)
		if m.src.intn(5) == 0 {
			inc++ // stale
		}
		m.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: []string{m.anyLive(), m.anyLive()}, Worker: w, Incarnation: inc})
	case op == 10: // a gateway cancels (its own grant, someone else's, or one not granted yet)
		ids := []string{m.anyLive()}
		if len(m.ids) > 0 {
			ids = append(ids, m.ids[m.src.intn(len(m.ids))])
		}
		m.nGen++
		ids = append(ids, fmt.Sprintf("s%d", m.nGen))
		m.ids = append(m.ids, ids[len(ids)-1])
		m.apply(CmdReleaseSandboxes, ReleaseSandboxes{IDs: ids, Now: m.now(), Gateway: m.pick(modelGateways)})
	case op == 11: // delete and maybe create again, possibly with a reservation
		acct, fn := m.pick(modelAccounts), m.pick(modelFunctions)
		m.apply(CmdDeleteFunction, DeleteFunction{Account: acct, Name: fn})
		if m.src.intn(3) > 0 {
			f := Function{Account: acct, Name: fn, MemoryMB: 128, TimeoutMs: 3000}
			if r := m.src.intn(4) - 1; r >= 0 {
				f.Reserved = &r
			}
			m.apply(CmdCreateFunction, f)
		}
	case op == 12: // reservation set, changed or removed
		acct, fn := m.pick(modelAccounts), m.pick(modelFunctions)
		var r *int
		if v := m.src.intn(5) - 1; v >= 0 {
			r = &v
		}
		m.apply(CmdSetReserved, SetReserved{Account: acct, Name: fn, Reserved: r})
	case op == 13: // limit raised or lowered
		acct := m.pick(modelAccounts)
		lim := 1 + m.src.intn(6)
		if acct == "b" {
			lim = 104 + m.src.intn(20)
		}
		m.apply(CmdSetAccountLimit, SetAccountLimit{Account: acct, Limit: lim})
	case op == 14: // reconcile, current or stale incarnation
		w := m.pick(modelWorkers)
		inc := m.workerInc(w)
		if m.src.intn(4) == 0 {
			inc += 1 + uint64(m.src.intn(2))
		}
		present := []string{m.anyLive(), m.anyLive(), "ghost"}
		m.apply(CmdReconcileWorker, ReconcileWorker{Worker: w, Incarnation: inc, Present: present, Now: m.now(), GraceNs: int64(50 * time.Millisecond)})
	case op == 15: // a worker dies (verdict about its current or an older incarnation)
		w := m.pick(modelWorkers)
		inc := m.workerInc(w)
		if m.src.intn(3) == 0 && inc > 0 {
			inc--
		}
		m.apply(CmdWorkerDead, WorkerDead{ID: w, Incarnation: inc})
	case op == 16: // a worker (re)registers: renewal, restart, or new size
		w := m.pick(modelWorkers)
		inc := m.workerInc(w)
		if m.src.intn(3) == 0 {
			inc = 0
		}
		m.apply(CmdRegisterWorker, Worker{ID: w, Capacity: 40 + m.src.intn(30), Incarnation: inc})
	case op == 17: // an exact duplicate of a recent entry (a client retry)
		if n := len(m.log); n > 0 {
			e := m.log[n-1-m.src.intn(min(n, 5))]
			m.applyRaw(e.t, e.body)
		}
	case op == 18:
		m.apply(CmdSetClusterID, SetClusterID{ID: m.pick([]string{"c1", "c2"})})
	default: // garbage and unknown commands change nothing
		before := m.l.Digest()
		m.applyRaw(CmdType(1+m.src.intn(10)), []byte(`{"broken`))
		m.applyRaw(CmdType(50), []byte(`{}`))
		if after := m.l.Digest(); after != before {
			m.t.Fatalf("step %d: a rejected command changed the state", m.steps)
		}
	}
	m.check()
	if m.src.intn(25) == 0 {
		m.checkSnapshotAndReplay()
	}
}

func (m *model) grant(c CreateSandbox) {
	prev, existed := m.l.s.Sandboxes[c.ID]
	var prevCopy Sandbox
	if existed {
		prevCopy = *prev
	}
	g := m.apply(CmdCreateSandbox, c).(*Grant)
	for _, v := range c.Release {
		if v == c.ID {
			continue
		}
		if _, held := m.l.s.Sandboxes[v]; held {
			m.t.Fatalf("step %d: victim %s still counted after a CreateSandbox naming it (%+v)", m.steps, v, g)
		}
	}
	if existed && g.Sandbox != nil {
		if *g.Sandbox != prevCopy {
			m.t.Fatalf("step %d: retried grant %s answered %+v, first %+v", m.steps, c.ID, *g.Sandbox, prevCopy)
		}
		if prevCopy.Account != c.Account || prevCopy.Function != c.Function {
			m.t.Fatalf("step %d: id %s of another sandbox answered to %s/%s", m.steps, c.ID, c.Account, c.Function)
		}
		return
	}
	if g.Sandbox == nil {
		return
	}
	// A new grant: right after it, nothing it was admitted under is over.
	sb := g.Sandbox
	a, fn := m.l.Usage(sb.Account, sb.Function)
	if a.Sandboxes > a.Limit {
		m.t.Fatalf("step %d: grant %s put account %s at %d > limit %d", m.steps, sb.ID, sb.Account, a.Sandboxes, a.Limit)
	}
	if sb.Pool == quota.PoolReserved && (!fn.HasReserved || fn.Sandboxes > fn.Reserved) {
		m.t.Fatalf("step %d: grant %s put %s at %d > reserved %+v", m.steps, sb.ID, sb.Function, fn.Sandboxes, fn)
	}
	if sb.Pool == quota.PoolUnreserved && (fn.HasReserved || a.Unreserved > quota.UnreservedCap(a)) {
		m.t.Fatalf("step %d: grant %s put the unreserved pool at %d > %d", m.steps, sb.ID, a.Unreserved, quota.UnreservedCap(a))
	}
	if slices.Contains(c.Avoid, sb.Worker) {
		for id, w := range m.l.s.Workers {
			if id != sb.Worker && !slices.Contains(c.Avoid, id) && w.Alive && (w.Capacity == 0 || m.l.wkCount[id] < w.Capacity) {
				m.t.Fatalf("step %d: grant %s on avoided worker %s while %s had room", m.steps, sb.ID, sb.Worker, id)
			}
		}
	}
	f := m.l.s.Functions[FunctionKeyOf(sb)]
	switch v := f.Version(sb.Version); {
	case sb.Version != "" && sb.Version != "$LATEST" && (v == nil || sb.Revision != v.Created || sb.MemoryMB != v.MemoryMB):
		m.t.Fatalf("step %d: grant %s for version %s at revision %d (version %+v)", m.steps, sb.ID, sb.Version, sb.Revision, v)
	case (sb.Version == "" || sb.Version == "$LATEST") && sb.Revision != f.Rev():
		m.t.Fatalf("step %d: grant %s of $LATEST at revision %d, current %d", m.steps, sb.ID, sb.Revision, f.Rev())
	}
	if sb.Provisioned {
		if held, want := m.l.provisionedHeld(f, sb.Version, sb.Revision), m.l.ProvisionedTarget(f)[sb.Version]; held > want {
			m.t.Fatalf("step %d: provisioned grant %s makes %d for version %s, config requests %d", m.steps, sb.ID, held, sb.Version, want)
		}
	}
	if w := m.l.s.Workers[sb.Worker]; w == nil || w.Incarnation != sb.WorkerInc {
		m.t.Fatalf("step %d: grant %s on worker %s with incarnation %d (worker %+v)", m.steps, sb.ID, sb.Worker, sb.WorkerInc, w)
	}
}

// FunctionKeyOf is the function key of a sandbox.
func FunctionKeyOf(sb *Sandbox) string { return wire.FunctionKey(sb.Account, sb.Function) }

func (m *model) check() {
	if d := m.l.Accounting().Diff(m.l.Recount()); d != "" {
		m.t.Fatalf("step %d: incremental counts differ from a recount:\n%s", m.steps, d)
	}
	if neg := m.l.Accounting().Negative(); neg != "" {
		m.t.Fatalf("step %d: negative count: %s", m.steps, neg)
	}
	wk := map[string]int{}
	for _, sb := range m.l.s.Sandboxes {
		wk[sb.Worker]++
		if m.l.s.Workers[sb.Worker] == nil {
			m.t.Fatalf("step %d: sandbox %s on forgotten worker %s", m.steps, sb.ID, sb.Worker)
		}
	}
	for w, n := range m.l.wkCount {
		if wk[w] != n {
			m.t.Fatalf("step %d: worker %s counted %d, holds %d", m.steps, w, n, wk[w])
		}
	}
	if err := Validate(&m.l.s); err != nil {
		m.t.Fatalf("step %d: the live state does not validate: %v", m.steps, err)
	}
	m.checkTrim()
	m.checkControl()
}

// checkTrim: what a trim drops first (Excess) lies inside the groups over
// their caps (OverCap), and a group within every cap has no excess: the
// second drop of a draining trim never misses a sandbox of the first.
func (m *model) checkTrim() {
	accounts := map[string]bool{}
	for _, sb := range m.l.s.Sandboxes {
		accounts[sb.Account] = true
	}
	for a := range accounts {
		over := map[string]bool{}
		for _, ids := range m.l.OverCap(a) {
			for _, id := range ids {
				over[id] = true
			}
		}
		for _, ids := range m.l.Excess(a) {
			for _, id := range ids {
				if !over[id] {
					m.t.Fatalf("step %d: account %s: %s is excess but in no group over its cap", m.steps, a, id)
				}
			}
		}
	}
}

// checkSnapshotAndReplay restores a snapshot into a fresh FSM and replays
// the log into a fresh ledger; both must equal the live one exactly.
func (m *model) checkSnapshotAndReplay() {
	f := &FSM{l: m.l}
	snap, err := f.Snapshot()
	if err != nil {
		m.t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		m.t.Fatal(err)
	}
	g := NewFSM(m.l.rate, m.l.defLimit)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		m.t.Fatalf("step %d: own snapshot rejected: %v", m.steps, err)
	}
	g.Read(func(r *Ledger) {
		if r.Digest() != m.l.Digest() {
			m.t.Fatalf("step %d: restored digest %s, live %s", m.steps, r.Digest(), m.l.Digest())
		}
		if d := r.Accounting().Diff(m.l.Accounting()); d != "" {
			m.t.Fatalf("step %d: restored counts differ:\n%s", m.steps, d)
		}
	})
	// Replay through a real FSM and raft.Log entries, as a follower would.
	h := NewFSM(m.l.rate, m.l.defLimit)
	for i, e := range m.log {
		h.Apply(&raft.Log{Index: uint64(i + 1), Data: append([]byte{byte(e.t)}, e.body...)})
	}
	h.Read(func(r *Ledger) {
		if r.Digest() != m.l.Digest() {
			a, _ := json.Marshal(&r.s)
			b, _ := json.Marshal(&m.l.s)
			m.t.Fatalf("step %d: replayed ledger differs:\n%s\n%s", m.steps, a, b)
		}
		if d := r.Accounting().Diff(m.l.Accounting()); d != "" {
			m.t.Fatalf("step %d: replayed counts differ:\n%s", m.steps, d)
		}
	})
	// And the restored ledger keeps agreeing when both apply more commands.
	b, _ := json.Marshal(CreateSandbox{ID: "after-restore", Account: "a", Function: "f", Now: m.now()})
	r1, _ := g.l.Apply(CmdCreateSandbox, b, m.idx+1)
	r2, _ := h.l.Apply(CmdCreateSandbox, b, m.idx+1)
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if !bytes.Equal(j1, j2) || g.l.Digest() != h.l.Digest() {
		m.t.Fatalf("step %d: restored and replayed ledgers decide differently: %s vs %s", m.steps, j1, j2)
	}
}

func TestLedgerModelRandomSequences(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 40
	}
	for seed := 0; seed < seeds; seed++ {
		m := newModel(t, prng{rand.New(rand.NewPCG(uint64(seed), 7))})
		for i := 0; i < 400; i++ {
			m.step()
		}
		m.checkSnapshotAndReplay()
	}
}

// TestLedgerModelReachesTheLimits makes sure the random sequences exercise
// what they are meant to: grants refused at a limit, victims, retries,
// stale incarnations. A generator that never got there would pass vacuously.
func TestLedgerModelReachesTheLimits(t *testing.T) {
	var throttles, reclaims, retries, stale int
	for seed := 0; seed < 20; seed++ {
		m := newModel(t, prng{rand.New(rand.NewPCG(uint64(seed), 9))})
		for i := 0; i < 400; i++ {
			n := len(m.log)
			m.step()
			for _, e := range m.log[n:] {
				switch e.t {
				case CmdCreateSandbox:
					var c CreateSandbox
					json.Unmarshal(e.body, &c)
					if len(c.Release) > 0 {
						reclaims++
					}
				}
			}
		}
		// Re-run the log to classify the answers.
		l := NewLedger(m.l.rate, m.l.defLimit)
		seen := map[string]bool{}
		for i, e := range m.log {
			v, _ := l.Apply(e.t, e.body, uint64(i+1))
			switch g := v.(type) {
			case *Grant:
				if g.Reason != "" {
					throttles++
				}
				if g.Err == ErrStale {
					stale++
				}
				if g.Sandbox != nil {
					if seen[g.Sandbox.ID] {
						retries++
					}
					seen[g.Sandbox.ID] = true
				}
			}
		}
	}
	if throttles < 50 || reclaims < 50 || retries < 20 || stale < 5 {
		t.Fatalf("sequences too tame: %d throttles, %d reclaims, %d retries, %d stale answers", throttles, reclaims, retries, stale)
	}
}

// FuzzLedgerSequence interprets the fuzzer's bytes as a command sequence
// and checks the same invariants after every command.
func FuzzLedgerSequence(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3})
	f.Add([]byte{11, 0, 0, 2, 3, 0, 1, 0, 0, 1, 1, 0, 9, 1})
	f.Add(bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 8))
	f.Add([]byte(strings.Repeat("\x07\x01\x02\x00", 40)))
	f.Fuzz(func(t *testing.T, b []byte) {
		src := &byteSource{b: b}
		m := newModel(t, src)
		for i := 0; i < 300 && !src.done(); i++ {
			m.step()
		}
		m.checkSnapshotAndReplay()
	})
}
