package roles

import (
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/membership"
)

// faultNATS routes the node's NATS connection through the fault layer.
func (c Common) faultNATS() []nats.Option {
	if c.Fault == nil {
		return nil
	}
	return []nats.Option{nats.SetCustomDialer(c.Fault.NATSDialer(c.ID))}
}

// join joins membership, over the fault layer when the node has one.
func join(c Common, mc membership.Config) (*membership.List, error) {
	if c.Fault == nil {
		return membership.Join(mc)
	}
	t, err := c.Fault.MemberTransport(c.ID, mc.BindAddr, nil)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	mc.Transport = t
	l, err := membership.Join(mc)
	if err != nil {
		t.Shutdown() // memberlist does not when it fails to start
	}
	return l, err
}

// raftLayer is the node's Raft stream layer over the fault layer; nil
// without one (placement then listens on plain TCP).
func (o PlacementOptions) raftLayer() (raft.StreamLayer, error) {
	if o.Fault == nil {
		return nil, nil
	}
	l, err := o.Fault.RaftLayer(o.ID, o.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("placement raft transport: %w", err)
	}
	return l, nil
}

// Aliases name a node by what it is at the moment of asking rather than by
// id; Pick resolves them.
var Aliases = []string{"leader", "follower", "placement", "worker", "gateway"}

// IsAlias reports whether name is one of Aliases.
func IsAlias(name string) bool {
	for _, a := range Aliases {
		if a == name {
			return true
		}
	}
	return false
}

// Pick resolves an alias among running nodes, taken in their given order:
// "leader" is the Raft leader (of the highest term, should two still
// claim it), "follower" the first placement node that is not leader,
// "placement", "worker" and "gateway" the first node of that role.
func Pick(alias string, nodes []*Node) (string, error) {
	var best *Node
	for _, n := range nodes {
		switch alias {
		case "leader":
			if n.Placement != nil && n.Placement.IsLeader() && (best == nil || n.Placement.Raft().CurrentTerm() > best.Placement.Raft().CurrentTerm()) {
				best = n
			}
		case "follower":
			if best == nil && n.Placement != nil && !n.Placement.IsLeader() {
				best = n
			}
		default:
			if best == nil && n.Role == alias {
				best = n
			}
		}
	}
	if best == nil {
		if !IsAlias(alias) {
			return "", fmt.Errorf("%q is not one of %v", alias, Aliases)
		}
		return "", fmt.Errorf("no running node is %s", alias)
	}
	return best.ID, nil
}
