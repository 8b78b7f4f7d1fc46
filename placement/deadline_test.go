package placement

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// TestNoGrantPastTheCallersDeadline: a cold-start request whose caller
// has stopped waiting is not granted. Under overload a grant committed
// after the gateway gave up held a slot nobody used until the gateway's
// cancel arrived, and 429ed others while the account was below its limit
// (seen in the chaos and 5x-overload drills). A victim already retired for
// it is released, and the same id is granted later when asked in time.
func TestNoGrantPastTheCallersDeadline(t *testing.T) {
	fw := &fakeWorkers{}
	n := leaderWith(t, fw, 2)
	n.grantFor(t, "g1", "g")
	n.grantFor(t, "g2", "g")
	n.reportIdle("w1", idle("g1", "g", 20), idle("g2", "g", 10))
	late := n.createSandbox(CreateSandbox{ID: "f1", Account: "a", Function: "f", Version: "$LATEST", Deadline: time.Now().Add(-time.Millisecond)})
	if late.Error == nil || late.Error.Type != "ServiceException" || (late.Grant != nil && late.Grant.Sandbox != nil) {
		t.Fatalf("a request past its deadline answered %+v", late)
	}
	held := func() (n2 int, f1 bool) {
		n.Read(func(l *Ledger) {
			n2 = l.AccountSandboxes("a")
			_, f1 = l.s.Sandboxes["f1"]
		})
		return
	}
	// The retired victim (g2, the LRU) comes back: one sandbox held.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h, f1 := held()
		if f1 {
			t.Fatal("f1 was granted past its deadline")
		}
		if h == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the account holds %d sandboxes after a late request; its retired victim was not released", h)
		}
	}
	if g := n.createSandbox(CreateSandbox{ID: "f1", Account: "a", Function: "f", Version: "$LATEST", Deadline: time.Now().Add(time.Second)}); g.Error != nil || g.Grant == nil || g.Grant.Sandbox == nil {
		t.Fatalf("the same id asked in time: %+v", g)
	}
}

// TestClientSendsItsBudget: the request says how long its caller waits.
func TestClientSendsItsBudget(t *testing.T) {
	n, err := startSingleWith(t, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	budgets := make(chan int64, 1)
	sub, err := n.nc.Subscribe(wire.GatewayOpSubject("gw-test", wire.OpCreateSandbox), func(m *nats.Msg) {
		var req wire.Request
		json.Unmarshal(m.Data, &req)
		budgets <- req.BudgetNs
		m.Respond([]byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	c := NewClient(n.nc, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c.GatewayOp(ctx, "gw-test", wire.OpCreateSandbox, wire.Request{Op: wire.OpCreateSandbox})
	if b := time.Duration(<-budgets); b <= 0 || b > 300*time.Millisecond {
		t.Fatalf("budget sent %v, want within (0, 300ms]", b)
	}
}
