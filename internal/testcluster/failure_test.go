package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/placement"
)

// TestPlacementQuorumLoss is drill 1: with 2 of 3 placement nodes down,
// warm invocations keep succeeding, cold starts fail fast with a distinct
// ServiceException (never 429, never a hang), and recover by themselves
// once the nodes return.
func TestPlacementQuorumLoss(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("warm", "20ms", "5ms"))
	createFunction(t, url, synthetic("cold", "1ms", "1ms"))
	// Warm up 8 sandboxes of "warm".
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); invoke(t, url, "warm", `{}`) }()
	}
	wg.Wait()

	// Background warm load on both gateways for the whole drill.
	ctx, stop := context.WithCancel(context.Background())
	var warmOK, warmBad atomic.Int64
	var lwg sync.WaitGroup
	for i := 0; i < 4; i++ {
		lwg.Add(1)
		go func(i int) {
			defer lwg.Done()
			for ctx.Err() == nil {
				r := invoke(t, c.GatewayURL(i%2), "warm", `{}`)
				if r.Status == 200 {
					warmOK.Add(1)
				} else {
					warmBad.Add(1)
				}
			}
		}(i)
	}

	leader := c.Leader()
	var killed []string
	for _, id := range c.IDs("placement") {
		if id != leader.ID && len(killed) < 1 {
			killed = append(killed, id)
		}
	}
	killed = append(killed, leader.ID) // the leader and one follower
	for _, id := range killed {
		c.Kill(id)
	}
	if err := c.WaitFor(func() bool { return c.Leader() == nil }, 3*time.Second); err != nil {
		t.Fatal("a lone placement node still claims leadership")
	}
	before := warmOK.Load()
	// Cold starts: fail fast and distinctly.
	for i := 0; i < 5; i++ {
		r := invoke(t, c.GatewayURL(i%2), "cold", `{"duration_ms":1}`)
		// "cold" has no sandbox yet, so every call needs placement.
		if r.Status != 500 || r.ErrorType != "ServiceException" || !strings.Contains(r.Body.Msg, "placement") {
			t.Fatalf("cold start without quorum: %d %s %+v", r.Status, r.ErrorType, r.Body)
		}
		if r.Latency > time.Second {
			t.Fatalf("cold start without quorum took %s, want < 1s", r.Latency)
		}
	}
	// Control-plane writes fail as fast, with the same exception.
	start := time.Now()
	b, _ := json.Marshal(synthetic("later", "1ms", "1ms"))
	resp, err := http.Post(url+"/2015-03-31/functions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != 500 || resp.Header.Get(api.HeaderErrorType) != "ServiceException" || took > time.Second {
		t.Fatalf("create-function without quorum: %d %s after %s, want ServiceException within 1s", resp.StatusCode, resp.Header.Get(api.HeaderErrorType), took)
	}
	// Warm invocations kept going meanwhile.
	if err := c.WaitFor(func() bool { return warmOK.Load() > before+50 }, 5*time.Second); err != nil {
		t.Fatalf("warm invocations stalled without quorum: %d ok before, %d now", before, warmOK.Load())
	}
	for _, id := range killed {
		c.Restart(id)
	}
	if err := c.WaitFor(func() bool { return c.Leader() != nil }, 10*time.Second); err != nil {
		t.Fatal("no leader after restart")
	}
	if err := c.WaitFor(func() bool { return invoke(t, url, "cold", `{}`).Status == 200 }, 5*time.Second); err != nil {
		t.Fatal("cold starts did not recover after quorum returned")
	}
	stop()
	lwg.Wait()
	total := warmOK.Load() + warmBad.Load()
	if rate := float64(warmOK.Load()) / float64(total); rate < 0.99 {
		t.Fatalf("warm success %.3f (%d of %d) during quorum loss, want >= 0.99", rate, warmOK.Load(), total)
	}
	t.Logf("warm invocations during the drill: %d ok, %d failed", warmOK.Load(), warmBad.Load())
}

// TestLeaderKillColdStartsRecover is drill P5a: kill the placement leader;
// cold starts succeed again within 1.5 s.
func TestLeaderKillColdStartsRecover(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3})
	// Functions never invoked before: each call below must be a cold start,
	// so each one needs placement.
	const fresh = 60
	for i := 0; i < fresh; i++ {
		createFunction(t, c.GatewayURL(0), synthetic("fresh-"+strconv.Itoa(i), "1ms", "1ms"))
	}
	old := c.Leader()
	killedAt := time.Now()
	c.Kill(old.ID)
	for i := 0; ; i++ {
		if i == fresh {
			t.Fatalf("no cold start succeeded in %d attempts (%s) after the leader died", fresh, time.Since(killedAt))
		}
		r := invoke(t, c.GatewayURL(i%2), "fresh-"+strconv.Itoa(i), `{}`)
		if r.Status == 200 {
			if !r.Cold {
				t.Fatalf("fresh function %d ran warm", i)
			}
			break
		}
		if r.Status != 500 || r.ErrorType != "ServiceException" {
			t.Fatalf("during the election: %d %s, want ServiceException", r.Status, r.ErrorType)
		}
	}
	recovered := time.Since(killedAt)
	if recovered > 1500*time.Millisecond {
		t.Fatalf("cold starts recovered after %s, want <= 1.5s", recovered)
	}
	if l := c.Leader(); l == nil || l.ID == old.ID {
		t.Fatal("no new leader")
	}
	t.Logf("cold starts recovered %s after the leader was killed", recovered)
}

// TestWorkerKillReleasesCapacityAndReroutes: a dead worker's sandboxes are
// released through Raft and traffic moves to the others within 2 s.
func TestWorkerKillReleasesCapacityAndReroutes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 2, Workers: 3})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("f", "30ms", "5ms"))
	var wg sync.WaitGroup
	for i := 0; i < 9; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); invoke(t, url, "f", `{}`) }()
	}
	wg.Wait()
	victim := "worker-1"
	held := func() int {
		n := 0
		if l := c.Leader(); l != nil {
			l.Placement.Read(func(led *placement.Ledger) {
				for _, sb := range led.State().Sandboxes {
					if sb.Worker == victim {
						n++
					}
				}
			})
		}
		return n
	}
	if held() == 0 {
		t.Fatal("the victim holds no sandboxes before the kill; spread is broken")
	}
	killedAt := time.Now()
	c.Kill(victim)
	// Placement gives a silent worker's capacity away only when its lease
	// has certainly expired: TTL + margin after its last renewal.
	within := placement.DefaultLease.Expiry() + time.Second
	if err := c.WaitFor(func() bool { return held() == 0 }, within); err != nil {
		t.Fatalf("dead worker's %d sandboxes not released within %s", held(), within)
	}
	released := time.Since(killedAt)
	if released < placement.DefaultLease.Expiry()-placement.DefaultLease.RenewEvery() {
		t.Fatalf("capacity released %s after the kill, before the lease could have expired", released)
	}
	// Traffic flows without the dead worker, through both gateways.
	for i := 0; i < 20; i++ {
		r := invoke(t, c.GatewayURL(i%2), "f", `{}`)
		if r.Status != 200 {
			t.Fatalf("invoke after worker death: %d %s %+v", r.Status, r.ErrorType, r.Body)
		}
		if r.Worker == victim {
			t.Fatal("routed to the dead worker")
		}
	}
	t.Logf("capacity released %s after the kill", released)
}

// TestNoWorkersFailsFast: with no worker at all, a sync invoke fails in
// under 100 ms (NATS no responders), not at the function timeout.
func TestNoWorkersFailsFast(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 0})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("f", "1ms", "1ms"))
	for i := 0; i < 3; i++ {
		r := invoke(t, url, "f", `{}`)
		if r.Status < 500 || r.ErrorType != "ServiceException" {
			t.Fatalf("no workers: %d %s", r.Status, r.ErrorType)
		}
		if r.Latency > 100*time.Millisecond {
			t.Fatalf("no workers: failed after %s, want < 100ms", r.Latency)
		}
	}
}

// TestColdStartOnJustDeadWorkerIsPlacedElsewhere: in the moment between a
// worker's death and its lease expiring, a grant can name it; the gateway
// finds nobody listening, cancels the grant and reports the worker, and
// placement places the invocation again on a worker it does not suspect.
func TestColdStartOnJustDeadWorkerIsPlacedElsewhere(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 2})
	url := c.GatewayURL(0)
	for i := 0; i < 6; i++ {
		createFunction(t, url, synthetic("fresh"+string(rune('a'+i)), "1ms", "1ms"))
	}
	c.Kill("worker-1")
	for i := 0; i < 6; i++ {
		r := invoke(t, url, "fresh"+string(rune('a'+i)), `{}`)
		if r.Status != 200 || !r.Cold || r.Worker != "worker-2" {
			t.Fatalf("cold start %d right after a worker died: %d %s %+v on %q", i, r.Status, r.ErrorType, r.Body, r.Worker)
		}
	}
}
