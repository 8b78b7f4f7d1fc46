package testcluster_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
)

// TestChaosDrillLimitHoldsUnderEveryFault is the drill the headline promise
// rests on: 5x overload of 400 ms invocations against an account limit of
// 20 while, one after another, a worker is paused for twice its lease TTL,
// a worker is partitioned from everything (placement and NATS) and healed,
// the placement leader is partitioned and healed, and a follower is paused.
// The checker users run (coldstart check) must pass over the whole run:
// peak in-flight never above 20, 429s only at the limit. A new leader is
// elected, the old one steps down, every successful invocation has its
// record, and the replicas end with the same ledger digest.
func TestChaosDrillLimitHoldsUnderEveryFault(t *testing.T) {
	if testing.Short() {
		t.Skip("drill")
	}
	const limit = 20
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3, Verbose: os.Getenv("CS_VERBOSE") != ""})
	urls := []string{c.GatewayURL(0), c.GatewayURL(1)}
	if code, body := put(t, urls[0], api.PathAccountLimit, api.SetLimitInput{ConcurrentExecutions: limit}); code != 200 {
		t.Fatalf("set limit: %d %s", code, body)
	}
	createFunction(t, urls[0], synthetic("drill", "400ms", "50ms"))
	createFunction(t, urls[0], synthetic("drill2", "400ms", "50ms"))
	rec := c.Records()
	ttl := placement.DefaultLease.TTL

	ctx, cancel := context.WithCancel(context.Background())
	type result struct{ out []outcome }
	done := make(chan result, 1)
	// 5x the limit in closed-loop clients, on both gateways.
	go func() {
		done <- result{hammer(ctx, t, urls, map[string]int{"drill": 3 * limit, "drill2": 2 * limit}, `{}`)}
	}()
	// The load runs for fixed spans between faults (this is the drill's
	// schedule, not a wait for anything).
	run := func(d time.Duration) { time.Sleep(d) }
	faults := testcluster.Faults{Handler: 400 * time.Millisecond}
	fault, settle := faults.Ended, testcluster.Settle

	run(2 * time.Second)
	// 1. A worker paused for twice its lease TTL, then resumed.
	w1 := c.AwaitNode("worker", 5*time.Second)
	at := time.Now()
	c.Pause(w1)
	run(2 * ttl)
	c.Resume(w1)
	fault(at)
	run(settle + time.Second)

	// 2. A worker partitioned from placement and NATS, then healed.
	w2 := c.IDs("worker")[1]
	at = time.Now()
	c.Partition(w2)
	run(2 * ttl)
	c.Heal(w2)
	fault(at)
	run(settle + time.Second)

	// 3. The placement leader partitioned from everyone, then healed.
	old := c.AwaitNode("leader", 5*time.Second)
	partitioned := time.Now()
	c.Partition(old)
	var elected time.Duration
	if err := c.WaitFor(func() bool {
		for _, id := range c.IDs("placement") {
			if id != old && c.Node(id).Placement.IsLeader() {
				elected = time.Since(partitioned)
				return true
			}
		}
		return false
	}, 3*time.Second); err != nil {
		t.Fatal("no new leader after the old one was partitioned")
	}
	if err := c.WaitFor(func() bool { return !c.Node(old).Placement.IsLeader() }, 3*time.Second); err != nil {
		t.Fatal("the partitioned leader did not step down")
	}
	// How fast an idle cluster elects is TestPartitionLeaderFromPlacementPeers's
	// (3 election timeouts). Under this drill's 5x load and -race the
	// peers' timers run late: 858 ms was seen against 750. The bound here
	// only catches an election that waits for something it should not.
	if max := 10 * testcluster.RaftTiming.Election; elected > max {
		t.Errorf("new leader after %s under load, want within 10x the election timeout (%s)", elected, max)
	}
	run(2 * time.Second)
	c.Heal(old)
	fault(partitioned)
	run(settle + time.Second)

	// 4. A follower paused, then resumed.
	f := c.AwaitNode("follower", 5*time.Second)
	at = time.Now()
	c.Pause(f)
	run(3 * time.Second)
	c.Resume(f)
	fault(at)
	run(2 * time.Second)

	cancel()
	out := (<-done).out
	t.Logf("new leader %s after the partition (election timeout %s)", elected, testcluster.RaftTiming.Election)

	okIDs := map[string]bool{}
	statuses := map[int]int{}
	failures := map[string]int{} // what the 5xx said, for a failure report
	for _, o := range out {
		statuses[o.Status]++
		if o.Status == http.StatusOK {
			okIDs[o.RequestID] = true
		}
		if o.Status >= 500 {
			failures[strconv.Itoa(o.Status)+" "+o.ErrorType+": "+o.Body.Text()]++
		}
	}
	t.Logf("outcomes by status: %v", statuses)
	for f, n := range failures {
		t.Logf("  %4d x %s", n, f)
	}
	if statuses[http.StatusOK] < 100 || statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("the drill did not load the cluster: %v", statuses)
	}
	// Every successful invocation is accounted for by its record.
	if err := c.WaitFor(func() bool {
		have := map[string]bool{}
		for _, r := range rec.All() {
			have[r.RequestID] = true
		}
		for id := range okIDs {
			if !have[id] {
				return false
			}
		}
		return true
	}, 10*time.Second); err != nil {
		t.Fatalf("successful invocations without a record")
	}
	// The checker over the whole run.
	if faults.Judge(t, rec.Everything(), limit); t.Failed() {
		t.FailNow()
	}
	// The replicas agree: same digest at the same applied index.
	if err := c.WaitFor(func() bool {
		digest, idx := "", uint64(0)
		for i, id := range c.IDs("placement") {
			s := c.Node(id).Placement.Snapshot()
			if i == 0 {
				digest, idx = s.Digest, s.Index
			} else if s.Digest != digest || s.Index != idx {
				return false
			}
		}
		return true
	}, 10*time.Second); err != nil {
		for _, id := range c.IDs("placement") {
			s := c.Node(id).Placement.Snapshot()
			t.Logf("%s: index %d digest %s", id, s.Index, s.Digest)
		}
		t.Fatal("placement replicas disagree after the drill")
	}
}
