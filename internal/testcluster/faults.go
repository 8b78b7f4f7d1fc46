package testcluster

import (
	"time"

	"github.com/coldstart-dev/coldstart/internal/faultnet"
	"github.com/coldstart-dev/coldstart/internal/roles"
)

// Pause freezes the network around node id: its connections stay open and
// carry nothing, its dials hang, its gossip datagrams are lost, until
// Resume. Unlike SIGSTOP the node's own goroutines keep running, so its
// timers fire (a paused Raft node campaigns, its memberlist suspects the
// others) and it must recover from that on Resume.
func (c *Cluster) Pause(id string) { c.Fault.Pause(id) }

// Resume undoes Pause; bytes held meanwhile are delivered.
func (c *Cluster) Resume(id string) { c.Fault.Resume(id) }

// Partition drops all traffic between node id and each node of from, both
// ways; with from empty, between id and every other node, the NATS server
// (faultnet.NATS) included. NATS is a hub: messages between two nodes both
// still connected to it keep flowing whatever the partitions between them.
func (c *Cluster) Partition(id string, from ...string) { c.Fault.Partition(id, from...) }

// Heal removes every partition involving node id.
func (c *Cluster) Heal(id string) { c.Fault.Heal(id) }

// AwaitNode is ResolveNode waiting up to timeout for a match: a drill that
// targets "leader" right after a fault may land in an election, when no
// node leads for a moment. It fails the test when nothing matches in time.
func (c *Cluster) AwaitNode(name string, timeout time.Duration) string {
	c.t.Helper()
	var id string
	if err := c.WaitFor(func() bool { id = c.ResolveNode(name); return id != "" }, timeout); err != nil {
		c.t.Fatalf("no %s within %s", name, timeout)
	}
	return id
}

// ResolveNode returns the node name designates: an alias of roles.Pick
// ("leader", "follower", "placement", "worker", "gateway") resolved among
// the running nodes now, or a node id of the cluster, or faultnet.NATS.
// It returns "" when nothing matches.
func (c *Cluster) ResolveNode(name string) string {
	if !roles.IsAlias(name) {
		if _, ok := c.specs[name]; ok || name == faultnet.NATS {
			return name
		}
		return ""
	}
	c.mu.Lock()
	var nodes []*roles.Node
	for _, id := range c.order {
		if n := c.nodes[id]; n != nil {
			nodes = append(nodes, n)
		}
	}
	c.mu.Unlock()
	id, _ := roles.Pick(name, nodes)
	return id
}
