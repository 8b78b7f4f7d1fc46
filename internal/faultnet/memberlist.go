package faultnet

import (
	"context"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberTransport is a memberlist transport of one node: memberlist's own
// UDP and TCP transport with every packet and stream judged by the layer.
type MemberTransport struct {
	l       *Layer
	id      string
	inner   *memberlist.NetTransport
	packets chan *memberlist.Packet
	streams chan net.Conn
	closing chan struct{} // Shutdown began: stop handing things out
	done    chan struct{} // the inner transport is down
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*MemberTransport)(nil)

// MemberTransport binds memberlist's UDP and TCP listeners on bindAddr
// (host:port) for node id. logger may be nil.
func (l *Layer) MemberTransport(id, bindAddr string, logger *log.Logger) (*MemberTransport, error) {
	host, portStr, err := net.SplitHostPort(bindAddr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	l.Register(id, bindAddr)
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
	if err != nil {
		return nil, err
	}
	l.Register(id, net.JoinHostPort(host, strconv.Itoa(inner.GetAutoBindPort())))
	t := &MemberTransport{l: l, id: id, inner: inner, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), closing: make(chan struct{}), done: make(chan struct{})}
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

// The inner transport blocks its listeners on unbuffered channels, so the
// forwarders drain them until it is down, even while shutting down.
func (t *MemberTransport) forwardPackets() {
	for {
		select {
		case p := <-t.inner.PacketCh():
			if t.passes(t.l.NodeOf(p.From.String())) {
				select {
				case t.packets <- p:
				case <-t.closing:
				}
			}
		case <-t.done:
			return
		}
	}
}

func (t *MemberTransport) forwardStreams() {
	for {
		select {
		case raw := <-t.inner.StreamCh():
			c := t.l.track(raw, t.id, "", false)
			select {
			case t.streams <- c:
			case <-t.closing:
				c.Close()
			}
		case <-t.done:
			return
		}
	}
}

// passes reports whether a datagram between this node and peer gets
// through: paused or partitioned, it is lost.
func (t *MemberTransport) passes(peer string) bool {
	if !t.l.active.Load() {
		return true
	}
	v, _ := t.l.verdict(t.id, peer)
	return v == pass
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *MemberTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.inner.GetAutoBindPort()
	}
	addr, p, err := t.inner.FinalAdvertiseAddr(ip, port)
	if err == nil {
		t.l.Register(t.id, net.JoinHostPort(addr.String(), strconv.Itoa(p)))
	}
	return addr, p, err
}

// WriteTo implements memberlist.Transport.
func (t *MemberTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *MemberTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if !t.passes(t.peer(a)) {
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, a)
}

// PacketCh implements memberlist.Transport.
func (t *MemberTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *MemberTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *MemberTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.l.dial(ctx, t.id, t.peer(a), "tcp", a.Addr, func(ctx context.Context) (net.Conn, error) {
		left := timeout
		if dl, ok := ctx.Deadline(); ok {
			left = time.Until(dl)
		}
		return t.inner.DialAddressTimeout(a, left)
	})
}

// StreamCh implements memberlist.Transport.
func (t *MemberTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport; it may be called more than once.
func (t *MemberTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.closing)
		err = t.inner.Shutdown()
		close(t.done)
	})
	return err
}

// peer is the node at a memberlist address: memberlist names nodes by our
// node ids, and the address map covers packets that carry no name.
func (t *MemberTransport) peer(a memberlist.Address) string {
	if a.Name != "" {
		return a.Name
	}
	return t.l.NodeOf(a.Addr)
}
