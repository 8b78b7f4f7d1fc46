package faultnet

import (
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLayer listens on addr (host:port, which is also what peers dial) for
// Raft node id; give it to raft.NewNetworkTransport.
func (l *Layer) RaftLayer(id, addr string) (raft.StreamLayer, error) {
	ln, err := l.Listen(id, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &raftLayer{Listener: ln, l: l, id: id}, nil
}

type raftLayer struct {
	net.Listener
	l  *Layer
	id string
}

func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return r.l.Dial(r.id, "tcp", string(address), timeout)
}
