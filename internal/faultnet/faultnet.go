// Package faultnet puts every socket of a node behind switches that tests
// and `coldstart chaos` flip: pause a node (its bytes stall until it is
// resumed), partition it from some or all other nodes (their bytes are
// lost), heal and resume. Raft streams, NATS client connections and
// memberlist packets and streams all go through one Layer, which knows the
// node id on both ends of each of them. See DESIGN.md.
package faultnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// NATS is the node id of the NATS server. It is a hub: cutting a node from
// it cuts the node from everything that travels over NATS.
const NATS = "nats"

// Layer holds the fault rules of a set of nodes and the connections they
// apply to. The zero value is not usable; call New.
type Layer struct {
	// active is true while any rule is set; without rules connections
	// take a lock-free path.
	active atomic.Bool

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every rule change
	paused   map[string]bool
	isolated map[string]bool // partitioned from everyone
	cut      map[pair]bool
	addrs    map[string]string // listen address -> node
	ports    map[string]string // port -> node, for wildcard binds
	eph      map[string]string // local address of a dialed conn -> dialing node
	conns    map[*conn]struct{}
}

type pair struct{ a, b string }

func mkpair(a, b string) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// New returns a layer without faults.
func New() *Layer {
	return &Layer{
		changed:  make(chan struct{}),
		paused:   map[string]bool{},
		isolated: map[string]bool{},
		cut:      map[pair]bool{},
		addrs:    map[string]string{},
		ports:    map[string]string{},
		eph:      map[string]string{},
		conns:    map[*conn]struct{}{},
	}
}

// Register records that addrs (host:port) belong to node id, so that
// traffic to or from them is attributed to it. Listeners made by the layer
// register themselves; servers started elsewhere (NATS) are registered by
// whoever starts them.
func (l *Layer) Register(id string, addrs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			l.ports[port] = id
			continue
		}
		l.addrs[a] = id
		if ip := net.ParseIP(host); ip != nil {
			l.addrs[net.JoinHostPort(ip.String(), port)] = id
		}
	}
}

// NodeOf returns the node an address belongs to, or "".
func (l *Layer) NodeOf(addr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodeOfLocked(addr)
}

func (l *Layer) nodeOfLocked(addr string) string {
	if id, ok := l.addrs[addr]; ok {
		return id
	}
	if id, ok := l.eph[addr]; ok {
		return id
	}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return l.ports[port]
	}
	return ""
}

// Pause stalls every socket of node id: nothing it sends leaves, nothing
// sent to it arrives, its new dials hang. Connections stay open; what was
// held is delivered on Resume. Datagrams (memberlist's UDP) are dropped,
// as a stopped process's socket buffer would overflow.
func (l *Layer) Pause(id string) {
	l.update(func() { l.paused[id] = true })
}

// Resume undoes Pause.
func (l *Layer) Resume(id string) {
	l.update(func() { delete(l.paused, id) })
}

// Partition drops all traffic, both ways, between node id and each node of
// from; with from empty, between id and every other node, NATS included.
// Connections open across the new partition go silent for good: writes are
// swallowed, reads wait, and Heal resets them, as TCP would once the path
// returned and the peers' retransmissions met a stale connection.
func (l *Layer) Partition(id string, from ...string) {
	l.update(func() {
		if len(from) == 0 {
			l.isolated[id] = true
		}
		for _, f := range from {
			if f != id && f != "" {
				l.cut[mkpair(id, f)] = true
			}
		}
		for c := range l.conns {
			if l.cutLocked(c.local, l.peerLocked(c)) {
				c.broken.Store(true)
			}
		}
	})
}

// Heal removes every partition involving node id and resets the
// connections they had silenced.
func (l *Layer) Heal(id string) {
	l.update(func() {
		delete(l.isolated, id)
		for p := range l.cut {
			if p.a == id || p.b == id {
				delete(l.cut, p)
			}
		}
		l.resetHealedLocked()
	})
}

// Reset heals and resumes every node.
func (l *Layer) Reset() {
	l.update(func() {
		clear(l.paused)
		clear(l.isolated)
		clear(l.cut)
		l.resetHealedLocked()
	})
}

func (l *Layer) resetHealedLocked() {
	for c := range l.conns {
		if c.broken.Load() && !c.reset.Load() && !l.cutLocked(c.local, l.peerLocked(c)) {
			c.reset.Store(true)
			c.Conn.Close() // the peer, possibly outside the layer, sees it too
			c.kick()
		}
	}
}

func (l *Layer) update(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn()
	l.active.Store(len(l.paused)+len(l.isolated)+len(l.cut) > 0)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Paused reports whether node id is paused.
func (l *Layer) Paused(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused[id]
}

// Partitioned returns the nodes id is partitioned from, sorted; all is true
// when it is partitioned from everyone.
func (l *Layer) Partitioned(id string) (from []string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.cut {
		switch id {
		case p.a:
			from = append(from, p.b)
		case p.b:
			from = append(from, p.a)
		}
	}
	sort.Strings(from)
	return from, l.isolated[id]
}

// Describe renders node id's faults ("" when it has none).
func (l *Layer) Describe(id string) string {
	var parts []string
	if l.Paused(id) {
		parts = append(parts, "paused")
	}
	switch from, all := l.Partitioned(id); {
	case all:
		parts = append(parts, "partitioned from everyone")
	case len(from) > 0:
		parts = append(parts, "partitioned from "+strings.Join(from, ","))
	}
	return strings.Join(parts, ", ")
}

type verdict int

const (
	pass verdict = iota
	stall
	drop
)

// verdictLocked judges traffic between local node a and peer b ("" when
// unknown). A pause wins over a partition: a paused node's bytes are held,
// not lost, so that Resume alone brings it back.
func (l *Layer) verdictLocked(a, b string) verdict {
	switch {
	case l.paused[a] || (b != "" && l.paused[b]):
		return stall
	case l.cutLocked(a, b):
		return drop
	}
	return pass
}

func (l *Layer) cutLocked(a, b string) bool {
	if a == b {
		return false
	}
	return l.isolated[a] || (b != "" && l.isolated[b]) || l.cut[mkpair(a, b)]
}

// verdict judges traffic between a and b; the channel is closed on the next
// rule change.
func (l *Layer) verdict(a, b string) (verdict, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.verdictLocked(a, b), l.changed
}

// peerLocked resolves a connection's peer lazily: an accepted connection
// learns its dialer once the dialer's side has registered its address.
func (l *Layer) peerLocked(c *conn) string {
	if c.remote == "" {
		c.remote = l.nodeOfLocked(c.Conn.RemoteAddr().String())
	}
	return c.remote
}

// Listen listens on addr for node id; accepted connections are subject to
// id's faults.
func (l *Layer) Listen(id, network, addr string) (net.Listener, error) {
	l.Register(id, addr) // before listening: a dial may land at once
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	l.Register(id, ln.Addr().String())
	return &listener{Listener: ln, l: l, id: id}, nil
}

type listener struct {
	net.Listener
	l  *Layer
	id string
}

func (ln *listener) Accept() (net.Conn, error) {
	raw, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return ln.l.track(raw, ln.id, "", false), nil
}

// Dialer dials for node From. It satisfies nats.CustomDialer.
type Dialer struct {
	Layer *Layer
	From  string
	// To is the node dialed; empty: the node registered at the address.
	To      string
	Timeout time.Duration // default 2 s
}

// Dial dials addr, waiting while From or the target is paused or the two
// are partitioned, as a dial whose SYNs are lost would, until Timeout.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	t := d.Timeout
	if t <= 0 {
		t = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), t)
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

// DialContext is Dial bounded by ctx instead of Timeout.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.Layer.dial(ctx, d.From, d.To, network, addr, func(ctx context.Context) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	})
}

// Dial dials addr for node from with a timeout.
func (l *Layer) Dial(from, network, addr string, timeout time.Duration) (net.Conn, error) {
	return (&Dialer{Layer: l, From: from, Timeout: timeout}).Dial(network, addr)
}

// NATSDialer is the dialer of node id's NATS connections.
func (l *Layer) NATSDialer(id string) *Dialer {
	return &Dialer{Layer: l, From: id, To: NATS}
}

func (l *Layer) dial(ctx context.Context, from, to, network, addr string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	if to == "" {
		to = l.NodeOf(addr)
	}
	for l.active.Load() {
		v, changed := l.verdict(from, to)
		if v == pass {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: &dialError{from: from, addr: addr, err: ctx.Err()}}
		}
	}
	raw, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	return l.track(raw, from, to, true), nil
}

// dialError is a dial given up while its path was down; net.OpError asks
// it whether it is a timeout.
type dialError struct {
	from, addr string
	err        error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("faultnet: %s to %s: path down: %v", e.from, e.addr, e.err)
}
func (e *dialError) Unwrap() error   { return e.err }
func (e *dialError) Timeout() bool   { return e.err == context.DeadlineExceeded }
func (e *dialError) Temporary() bool { return true }

// track wraps a connection of node local. Outbound connections register
// their local address so that the accepting side, if it is in this layer,
// learns who dialed.
func (l *Layer) track(raw net.Conn, local, remote string, outbound bool) *conn {
	c := &conn{Conn: raw, l: l, local: local, wake: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	c.remote = remote
	if outbound {
		c.eph = raw.LocalAddr().String()
		l.eph[c.eph] = local
	}
	l.conns[c] = struct{}{}
	// A dial that raced a new partition is born on the wrong side of it.
	if l.cutLocked(local, l.peerLocked(c)) {
		c.broken.Store(true)
	}
	return c
}

func (l *Layer) forget(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	if c.eph != "" && l.eph[c.eph] == c.local {
		delete(l.eph, c.eph)
	}
}

// errReset is what a connection silenced by a partition returns once the
// partition heals.
var errReset = fmt.Errorf("faultnet: connection reset after a partition: %w", syscall.ECONNRESET)

// conn is one end of a TCP connection of node local.
type conn struct {
	net.Conn
	l      *Layer
	local  string
	remote string // guarded by l.mu; "" until known
	eph    string

	broken atomic.Bool // crossed a partition: silent until reset
	reset  atomic.Bool // the partition healed: the conn is dead
	closed atomic.Bool

	mu       sync.Mutex
	rdl, wdl time.Time
	wake     chan struct{} // closed and replaced on deadline change, close, reset

	rmu     sync.Mutex // serialises reads over held
	held    []byte     // read while stalled, delivered after resume
	heldErr error
}

type connState struct {
	stalled, broken, reset bool
}

// state is the connection's standing under the rules now; changed is
// closed on the next rule change.
func (c *conn) state() (connState, <-chan struct{}) {
	if !c.l.active.Load() && !c.broken.Load() {
		return connState{}, nil
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	v := c.l.verdictLocked(c.local, c.l.peerLocked(c))
	if v == drop {
		c.broken.Store(true)
	}
	return connState{stalled: v == stall, broken: c.broken.Load(), reset: c.reset.Load()}, c.l.changed
}

func (c *conn) kick() {
	c.mu.Lock()
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

// wait returns once an operation may proceed: not stalled and, for reads,
// not silenced by a partition. It honours the deadlines and Close.
func (c *conn) wait(read bool) (broken bool, err error) {
	for {
		if c.closed.Load() {
			return false, net.ErrClosed
		}
		st, changed := c.state()
		if st.reset {
			return false, errReset
		}
		if !st.stalled && !(read && st.broken) {
			return st.broken, nil
		}
		c.mu.Lock()
		dl, wake := c.wdl, c.wake
		if read {
			dl = c.rdl
		}
		c.mu.Unlock()
		var timer *time.Timer
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return false, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		select {
		case <-changed:
		case <-wake:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if _, err := c.wait(true); err != nil {
			return 0, err
		}
		if len(c.held) > 0 {
			n := copy(p, c.held)
			c.held = c.held[n:]
			return n, nil
		}
		if c.heldErr != nil {
			err := c.heldErr
			c.heldErr = nil
			return 0, err
		}
		n, err := c.Conn.Read(p)
		// The read may have been waiting on the socket when a fault began.
		st, _ := c.state()
		switch {
		case st.reset:
			return 0, errReset
		case st.broken:
			continue // lost in the partition
		case st.stalled:
			c.held = append(c.held, p[:n]...)
			if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
				c.heldErr = err
			}
			continue
		}
		return n, err
	}
}

func (c *conn) Write(p []byte) (int, error) {
	broken, err := c.wait(false)
	if err != nil {
		return 0, err
	}
	if broken {
		return len(p), nil // into the void, as into a send buffer nobody drains
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.kick()
	c.l.forget(c)
	return c.Conn.Close()
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl, c.wdl = t, t
	c.mu.Unlock()
	c.kick()
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.mu.Unlock()
	c.kick()
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	c.kick()
	return c.Conn.SetWriteDeadline(t)
}
