package dashtest

import (
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/membership"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
)

// TestTimelineQuorumLostAndRegained kills two of three placement nodes:
// the gateway's timeline must say the quorum was lost, and regained once
// they are back, with the nodes going down and up on the way. It needs no
// browser.
func TestTimelineQuorumLostAndRegained(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	url := c.GatewayURL(0)
	// The gateway must have seen the quorum before it can see it lost.
	if err := c.WaitFor(func() bool {
		var s gateway.Series
		getJSON(t, url+gateway.PathSeries, &s)
		return s.Quorum && s.Leader != ""
	}, 10*time.Second); err != nil {
		t.Fatal("the gateway never saw a placement leader")
	}
	leader := c.Leader().ID
	var killed []string
	for _, id := range c.IDs(membership.RolePlacement) {
		if id != leader && len(killed) < 1 {
			killed = append(killed, id)
		}
	}
	killed = append(killed, leader) // the leader and one follower: one node left, no quorum
	for _, id := range killed {
		c.Kill(id)
	}
	var tl gateway.TimelinePage
	wait := func(what string, cond func() bool) {
		t.Helper()
		if err := c.WaitFor(func() bool { getJSON(t, url+gateway.PathTimeline, &tl); return cond() }, 30*time.Second); err != nil {
			var s gateway.Series
			getJSON(t, url+gateway.PathSeries, &s)
			t.Fatalf("timeline never showed %s: %+v (series: leader %q quorum %v)", what, tl.Events, s.Leader, s.Quorum)
		}
	}
	wait("the lost quorum and both nodes down", func() bool {
		return hasEvent(tl, gateway.EventQuorumLost, "") && hasEvent(tl, gateway.EventNodeDown, killed[0]) && hasEvent(tl, gateway.EventNodeDown, killed[1])
	})
	if hasEvent(tl, gateway.EventQuorumRegained, "") {
		t.Fatal("quorum regained before any node came back")
	}
	for _, id := range killed {
		c.Restart(id)
	}
	wait("the regained quorum and the nodes up", func() bool {
		return hasEvent(tl, gateway.EventQuorumRegained, "") && hasEvent(tl, gateway.EventNodeUp, killed[0]) && hasEvent(tl, gateway.EventNodeUp, killed[1])
	})
	// Lost comes before regained.
	var lost, regained uint64
	for _, e := range tl.Events {
		switch e.Kind {
		case gateway.EventQuorumLost:
			lost = e.Seq
		case gateway.EventQuorumRegained:
			regained = e.Seq
		}
	}
	if lost == 0 || regained < lost {
		t.Fatalf("quorum_lost #%d, quorum_regained #%d: out of order", lost, regained)
	}
}
