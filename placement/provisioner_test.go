package placement

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/wire"
)

// startTrio starts three placement nodes on one NATS server and waits for
// a serving leader.
func startTrio(t *testing.T, fw WorkerAPI) (*nats.Conn, []*Node) {
	t.Helper()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	var peers []Peer
	for i := 1; i <= 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, Peer{ID: "p" + strconv.Itoa(i), Addr: l.Addr().String()})
		l.Close()
	}
	var nodes []*Node
	for _, p := range peers {
		nc, err := natsutil.Connect(natsutil.URL(ns), "placement-"+p.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		n, err := Start(Config{ID: p.ID, RaftAddr: p.Addr, DataDir: t.TempDir(), Peers: peers, NATS: nc, Workers: fw, Timing: Tuned})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown() })
		nodes = append(nodes, n)
	}
	nc, err := natsutil.Connect(natsutil.URL(ns), "test-worker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	servingLeader(t, nodes)
	return nc, nodes
}

func servingLeader(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, n := range nodes {
			if n.IsLeader() && n.isServing() {
				return n
			}
		}
	}
	t.Fatal("no serving leader")
	return nil
}

// TestProvisionerAsksAgainAfterLeaderChange: the worker pre-warms a
// provisioned sandbox and answers ok, but the leader that asked loses
// leadership before it commits Ready. The grant stays in the ledger and
// holds the config's slot; the new leader must learn the outcome from the
// worker, or the config stays IN_PROGRESS at 0 allocated for good (seen
// in the provisioned drill when an init's CPU cost cost a heartbeat).
func TestProvisionerAsksAgainAfterLeaderChange(t *testing.T) {
	nc, nodes := startTrio(t, &fakeWorkers{})
	leader := servingLeader(t, nodes)
	first := leader
	resp, ok := leader.renew("w1", wire.Renew{Seq: 1, Capacity: 10})
	if !ok || resp.Lease == nil {
		t.Fatalf("renew: %+v", resp)
	}
	inc, seq := resp.Lease.Incarnation, uint64(1)
	var asked atomic.Int32
	var mu sync.Mutex
	var askedBy []string
	sub, err := nc.Subscribe(wire.WorkerSubject("w1", wire.WorkerPrewarm), func(m *nats.Msg) {
		k := asked.Add(1)
		mu.Lock()
		askedBy = append(askedBy, m.Header.Get(wire.HdrSandbox))
		mu.Unlock()
		if k == 1 {
			// The init is done; the leader loses leadership before the
			// answer reaches it, so its Ready commit fails.
			if err := first.raft.LeadershipTransfer().Error(); err != nil {
				t.Errorf("leadership transfer: %v", err)
			}
		}
		r := nats.NewMsg(m.Reply)
		r.Header.Set(wire.HdrStatus, wire.StatusOK)
		m.RespondMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, c := range []struct {
		t    CmdType
		body any
	}{
		{CmdCreateFunction, Function{Account: "a", Name: "f", Runtime: "python3.12", MemoryMB: 128, TimeoutMs: 3000}},
		{CmdPublishVersion, PublishVersion{Account: "a", Name: "f"}},
		{CmdSetProvisioned, SetProvisioned{Account: "a", Function: "f", Qualifier: "1", Requested: ptr(1)}},
	} {
		if _, err := leader.apply(c.t, c.body); err != nil {
			t.Fatal(err)
		}
	}
	leader.provisionSoon()
	ready := func(n *Node) (granted, ready int) {
		n.fsm.Read(func(l *Ledger) {
			for _, sb := range l.s.Sandboxes {
				if sb.Provisioned {
					granted++
					if sb.Ready {
						ready++
					}
				}
			}
		})
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := servingLeader(t, nodes)
		// The worker keeps its lease with whoever leads, as it would over
		// NATS.
		seq++
		now.renew("w1", wire.Renew{Seq: seq, Incarnation: inc, Capacity: 10})
		if g, r := ready(now); g == 1 && r == 1 && now != first {
			break
		}
		if time.Now().After(deadline) {
			g, r := ready(now)
			t.Fatalf("after the leader change: %d provisioned granted, %d ready (worker asked %d times)", g, r, asked.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(askedBy) < 2 || askedBy[0] != askedBy[1] {
		t.Fatalf("the new leader did not ask again for the same sandbox: %v", askedBy)
	}
}
