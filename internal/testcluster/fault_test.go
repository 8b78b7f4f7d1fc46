package testcluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
)

// TestPartitionLeaderFromPlacementPeers: cut the Raft leader off from the
// other placement nodes (NATS and gossip to everyone else untouched): the
// old leader steps down within 3 election timeouts, and once the others
// notice they elect a new leader within 3 election timeouts; after heal
// there is one leader and the logs converge.
//
// Noticing is bounded apart: hashicorp/raft's follower checks for a silent
// leader on a timer of 1-2 heartbeat timeouts that a heartbeat does not
// reset, so detection alone may take up to 3 heartbeat timeouts after the
// last contact, and an election whose pre-vote the slower peer rejects
// (it still has a leader) waits one more election timeout.
func TestPartitionLeaderFromPlacementPeers(t *testing.T) {
	tm := placement.Tuned
	c := testcluster.New(t, testcluster.Options{Raft: tm})
	old := c.AwaitNode("leader", 5*time.Second)
	oldTerm := c.Node(old).Placement.Raft().CurrentTerm()
	var peers []string
	for _, id := range c.IDs(membership.RolePlacement) {
		if id != old {
			peers = append(peers, id)
		}
	}
	start := time.Now()
	c.Partition(old, peers...)
	var elected string
	var noticedAfter, electedAfter, steppedDownAfter time.Duration
	var trace []string // the peers' state changes, for a failure report
	last := map[string]raft.RaftState{}
	err := c.WaitFor(func() bool {
		for _, id := range peers {
			st := c.Node(id).Placement.Raft().State()
			if st != last[id] {
				last[id] = st
				trace = append(trace, fmt.Sprintf("%s %s at %s", id, st, time.Since(start).Round(time.Millisecond)))
			}
			if noticedAfter == 0 && st != raft.Follower {
				noticedAfter = time.Since(start)
			}
			if elected == "" && st == raft.Leader {
				elected, electedAfter = id, time.Since(start)
			}
		}
		if steppedDownAfter == 0 && c.Node(old).Placement.Raft().State() != raft.Leader {
			steppedDownAfter = time.Since(start)
		}
		return elected != "" && steppedDownAfter != 0
	}, 5*time.Second)
	t.Logf("partitioned leader %s: stepped down after %s; peers noticed after %s; %s elected after %s (%v)", old, steppedDownAfter, noticedAfter, elected, electedAfter, trace)
	switch {
	case err != nil:
		t.Fatalf("no new leader, or the old one did not step down, within 5s")
	case steppedDownAfter > 3*tm.Election:
		t.Fatalf("old leader stepped down after %s, want within %s", steppedDownAfter, 3*tm.Election)
	case noticedAfter > 3*tm.Heartbeat:
		t.Fatalf("peers noticed the silent leader after %s, want within %s", noticedAfter, 3*tm.Heartbeat)
	case electedAfter-noticedAfter > 3*tm.Election:
		t.Fatalf("election took %s once noticed, want within %s", electedAfter-noticedAfter, 3*tm.Election)
	}
	if term := c.Node(elected).Placement.Raft().CurrentTerm(); term <= oldTerm {
		t.Fatalf("new leader's term %d, old leader's %d", term, oldTerm)
	}
	if got := c.ResolveNode("leader"); got != elected {
		t.Fatalf("ResolveNode(leader) = %q during the partition, want %q", got, elected)
	}

	c.Heal(old)
	ids := c.IDs(membership.RolePlacement)
	var state string
	err = c.WaitFor(func() bool {
		leaders := 0
		index := map[uint64]bool{}
		state = ""
		for _, id := range ids {
			r := c.Node(id).Placement.Raft()
			if r.State() == raft.Leader {
				leaders++
			}
			index[r.AppliedIndex()] = true
			state += fmt.Sprintf(" %s=%s/term %d/applied %d", id, r.State(), r.CurrentTerm(), r.AppliedIndex())
		}
		return leaders == 1 && len(index) == 1
	}, 10*time.Second)
	if err != nil {
		t.Fatalf("after heal, want one leader and one applied index:%s", state)
	}
}

// TestPauseWorkerSuspectedThenAlive: a paused worker is declared dead by
// every other member; resumed, it is alive again everywhere.
func TestPauseWorkerSuspectedThenAlive(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Workers: 2})
	w := c.ResolveNode("worker")
	if w != "worker-1" {
		t.Fatalf("ResolveNode(worker) = %q, want the first worker", w)
	}
	var observers []string
	for _, id := range append(c.IDs(membership.RolePlacement), c.IDs(membership.RoleWorker)...) {
		if id != w {
			observers = append(observers, id)
		}
	}
	// seen counts the observers that see w alive and those that see it dead.
	seen := func() (alive, dead int) {
		for _, id := range observers {
			l := c.Node(id).Members
			for _, m := range l.Members() {
				if m.ID == w {
					alive++
				}
			}
			for _, m := range l.Dead() {
				if m.ID == w {
					dead++
				}
			}
		}
		return
	}
	if alive, _ := seen(); alive != len(observers) {
		t.Fatalf("before the pause %d of %d members see %s alive", alive, len(observers), w)
	}

	c.Pause(w)
	if err := c.WaitFor(func() bool { a, d := seen(); return a == 0 && d == len(observers) }, 5*time.Second); err != nil {
		a, d := seen()
		t.Fatalf("paused %s: %d members still see it alive, %d dead, of %d", w, a, d, len(observers))
	}
	c.Resume(w)
	if err := c.WaitFor(func() bool { a, d := seen(); return a == len(observers) && d == 0 }, 10*time.Second); err != nil {
		a, d := seen()
		t.Fatalf("resumed %s: %d members see it alive, %d dead, of %d", w, a, d, len(observers))
	}
}
