package placement

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exposes Raft health (leader, term, commit index, last
// contact) and the ledger's sandbox count, read at scrape time.
func (n *Node) registerMetrics(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	l := prometheus.Labels{"node": n.cfg.ID}
	g := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "coldstart", Subsystem: "placement", Name: name, Help: help, ConstLabels: l}, f)
	}
	stat := func(key string) float64 {
		v, _ := strconv.ParseFloat(n.raft.Stats()[key], 64)
		return v
	}
	for _, c := range []prometheus.Collector{
		g("is_leader", "1 when this node is the Raft leader.", func() float64 {
			if n.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		g("term", "Current Raft term.", func() float64 { return stat("term") }),
		g("commit_index", "Raft commit index.", func() float64 { return stat("commit_index") }),
		g("applied_index", "Raft applied index.", func() float64 { return float64(n.raft.AppliedIndex()) }),
		g("last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader).", func() float64 {
			if n.raft.State() == raft.Leader {
				return 0
			}
			lc := n.raft.LastContact()
			if lc.IsZero() {
				return -1
			}
			return time.Since(lc).Seconds()
		}),
		g("sandboxes", "Sandboxes granted in this node's copy of the ledger.", func() float64 {
			c := 0
			n.fsm.Read(func(l *Ledger) { c = len(l.s.Sandboxes) })
			return float64(c)
		}),
		g("state", "Raft state of this node: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
			return float64(n.raft.State())
		}),
		g("leader_known", "1 when this node knows a leader (its view of quorum).", func() float64 {
			if addr, _ := n.raft.LeaderWithID(); addr != "" {
				return 1
			}
			return 0
		}),
		g("workers_alive", "Workers the ledger counts alive (placement may place sandboxes on them).", func() float64 {
			return float64(n.workerCount(true))
		}),
		g("workers_dead", "Workers the ledger holds as dead (their sandboxes released).", func() float64 {
			return float64(n.workerCount(false))
		}),
		g("members_alive", "Cluster members (all roles) this node's membership sees alive.", func() float64 {
			if n.cfg.Members == nil {
				return 0
			}
			return float64(len(n.cfg.Members.Members()))
		}),
	} {
		_ = reg.Register(c)
	}
}

func (n *Node) workerCount(alive bool) int {
	c := 0
	n.fsm.Read(func(l *Ledger) {
		for _, w := range l.s.Workers {
			if w.Alive == alive {
				c++
			}
		}
	})
	return c
}
