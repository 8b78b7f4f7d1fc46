package faultnet

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// quiet is how long a test watches for bytes that must not arrive. It only
// bounds a negative observation; nothing waits on it for progress.
const quiet = 300 * time.Millisecond

// patience bounds every wait for something that must happen.
const patience = 5 * time.Second

type server struct {
	ln    net.Listener
	conns chan net.Conn
}

func serve(t *testing.T, l *Layer, id string) *server {
	t.Helper()
	ln, err := l.Listen(id, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(patience):
		t.Fatal("no connection accepted")
		return nil
	}
}

// connect opens a connection from node `from` to s and returns both ends.
func connect(t *testing.T, l *Layer, from string, s *server) (net.Conn, net.Conn) {
	t.Helper()
	c, err := l.Dial(from, "tcp", s.addr(), patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, s.accept(t)
}

func send(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(patience))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

func recv(c net.Conn, d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func mustRecv(t *testing.T, c net.Conn, want string) {
	t.Helper()
	got, err := recv(c, patience)
	if err != nil || got != want {
		t.Fatalf("read: %q, %v; want %q", got, err, want)
	}
}

// mustStayQuiet fails if c delivers anything (data or an error other than
// its read deadline) within quiet.
func mustStayQuiet(t *testing.T, c net.Conn, what string) {
	t.Helper()
	got, err := recv(c, quiet)
	if !isTimeout(err) {
		t.Fatalf("%s: read %q, %v; want nothing until the deadline", what, got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func roundTrip(t *testing.T, a, b net.Conn, msg string) {
	t.Helper()
	send(t, a, msg)
	mustRecv(t, b, msg)
	send(t, b, msg+"-back")
	mustRecv(t, a, msg+"-back")
}

// TestPauseStallsAndResumeDelivers: a paused node's connections stay open
// but carry nothing; its new dials hang; Resume delivers what was held.
func TestPauseStallsAndResumeDelivers(t *testing.T) {
	l := New()
	sb, sc := serve(t, l, "b"), serve(t, l, "c")
	a, b := connect(t, l, "a", sb)
	c, b2 := connect(t, l, "c", sb)

	l.Pause("a")
	wrote := make(chan error, 1)
	go func() { _, err := a.Write([]byte("hello")); wrote <- err }()
	mustStayQuiet(t, b, "bytes from a paused node")
	select {
	case err := <-wrote:
		t.Fatalf("a paused node's write returned (%v); want it stalled", err)
	default:
	}
	roundTrip(t, c, b2, "others-unaffected")
	if _, err := l.Dial("a", "tcp", sc.addr(), 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("dial from a paused node: %v; want a timeout", err)
	}
	dialed := make(chan error, 1)
	go func() {
		c, err := l.Dial("a", "tcp", sc.addr(), patience)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()

	l.Resume("a")
	mustRecv(t, b, "hello")
	if err := <-wrote; err != nil {
		t.Fatalf("stalled write after resume: %v", err)
	}
	if err := <-dialed; err != nil {
		t.Fatalf("dial that hung across the pause: %v", err)
	}
	roundTrip(t, a, b, "same-connection")
}

// TestPauseHoldsBytesFromOutside: a peer outside the layer (the NATS
// server) keeps sending to a paused node; the node's reader gets nothing
// until Resume, then all of it.
func TestPauseHoldsBytesFromOutside(t *testing.T) {
	l := New()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := raw.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	a, err := l.NATSDialer("a").Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := <-accepted
	defer srv.Close()

	// A read already waiting on the socket when the pause begins.
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := a.Read(buf)
		got <- string(buf[:n])
	}()
	l.Pause("a")
	if _, err := srv.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Fatalf("a paused node read %q", s)
	case <-time.After(quiet):
	}
	l.Resume("a")
	select {
	case s := <-got:
		if s != "ping" {
			t.Fatalf("after resume read %q, want ping", s)
		}
	case <-time.After(patience):
		t.Fatal("held bytes not delivered after resume")
	}

	// Pausing the server's node stalls its clients the same way.
	l.Pause(NATS)
	srv.Write([]byte("pong"))
	mustStayQuiet(t, a, "bytes from a paused NATS")
	l.Resume(NATS)
	mustRecv(t, a, "pong")
}

// TestPartitionDropsBothWaysBetweenThePair: a partition between a and b
// loses traffic in both directions, on old connections and new dials, and
// leaves a-c and c-b alone.
func TestPartitionDropsBothWaysBetweenThePair(t *testing.T) {
	l := New()
	sa, sb, sc := serve(t, l, "a"), serve(t, l, "b"), serve(t, l, "c")
	ab, ba := connect(t, l, "a", sb)
	ac, ca := connect(t, l, "a", sc)
	cb, bc := connect(t, l, "c", sb)
	if p := ba.(*conn); func() string { l.mu.Lock(); defer l.mu.Unlock(); return l.peerLocked(p) }() != "a" {
		t.Fatalf("the accepting side did not learn its dialer")
	}

	l.Partition("a", "b")
	send(t, ab, "lost-a-to-b") // swallowed, as by a send buffer
	mustStayQuiet(t, ba, "a to b across the partition")
	send(t, ba, "lost-b-to-a")
	mustStayQuiet(t, ab, "b to a across the partition")
	for _, d := range []struct{ from, to string }{{"a", sb.addr()}, {"b", sa.addr()}} {
		if _, err := l.Dial(d.from, "tcp", d.to, 200*time.Millisecond); !isTimeout(err) {
			t.Fatalf("dial %s -> %s across the partition: %v; want a timeout", d.from, d.to, err)
		}
	}
	roundTrip(t, ac, ca, "a-c")
	roundTrip(t, cb, bc, "c-b")
	x, y := connect(t, l, "c", sa)
	roundTrip(t, x, y, "new c-a")
	if from, all := l.Partitioned("b"); all || len(from) != 1 || from[0] != "a" {
		t.Fatalf("Partitioned(b) = %v, %v", from, all)
	}
}

// TestHealResetsAndRestores: Heal resets the connections the partition
// silenced (their bytes never arrive), lets a hanging dial through and new
// connections work.
func TestHealResetsAndRestores(t *testing.T) {
	l := New()
	sb := serve(t, l, "b")
	ab, ba := connect(t, l, "a", sb)
	l.Partition("a", "b")
	send(t, ab, "lost")
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := ba.Read(buf)
		if n > 0 {
			err = errors.New("delivered " + strconv.Quote(string(buf[:n])))
		}
		read <- err
	}()
	dialed := make(chan error, 1)
	go func() {
		c, err := l.Dial("a", "tcp", sb.addr(), patience)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()

	l.Heal("b") // either end heals the pair
	select {
	case err := <-read:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("silenced connection after heal: %v; want a reset", err)
		}
	case <-time.After(patience):
		t.Fatal("silenced connection not reset by heal")
	}
	if _, err := ab.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write on a reset connection: %v", err)
	}
	if err := <-dialed; err != nil {
		t.Fatalf("dial that hung across the partition: %v", err)
	}
	sb.accept(t) // that dial's other end
	a2, b2 := connect(t, l, "a", sb)
	roundTrip(t, a2, b2, "healed")
}

// TestPartitionFromEveryone: with no nodes named, the partition cuts the
// node from all of them, NATS included, and from nobody else's traffic.
func TestPartitionFromEveryone(t *testing.T) {
	l := New()
	sb := serve(t, l, "b")
	nats, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nats.Close()
	go func() {
		for {
			c, err := nats.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	l.Partition("a")
	natsDial := func(id string) error {
		d := l.NATSDialer(id)
		d.Timeout = 200 * time.Millisecond
		c, err := d.Dial("tcp", nats.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := natsDial("a"); !isTimeout(err) {
		t.Fatalf("NATS dial of an isolated node: %v", err)
	}
	if _, err := l.Dial("a", "tcp", sb.addr(), 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("dial of an isolated node: %v", err)
	}
	if err := natsDial("c"); err != nil {
		t.Fatalf("NATS dial of another node: %v", err)
	}
	c, b := connect(t, l, "c", sb)
	roundTrip(t, c, b, "c-b")
	if got := l.Describe("a"); got != "partitioned from everyone" {
		t.Fatalf("Describe(a) = %q", got)
	}
	l.Heal("a")
	if err := natsDial("a"); err != nil {
		t.Fatalf("NATS dial after heal: %v", err)
	}
}

func memberTransport(t *testing.T, l *Layer, id string) (*MemberTransport, string) {
	t.Helper()
	mt, err := l.MemberTransport(id, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mt.Shutdown() })
	ip, port, err := mt.FinalAdvertiseAddr("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	return mt, net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// nextPacket returns the next packet mt receives.
func nextPacket(t *testing.T, mt *MemberTransport) *memberlist.Packet {
	t.Helper()
	select {
	case p := <-mt.PacketCh():
		return p
	case <-time.After(patience):
		t.Fatal("no packet")
		return nil
	}
}

func mustGetPacket(t *testing.T, mt *MemberTransport, want string) {
	t.Helper()
	if p := nextPacket(t, mt); string(p.Buf) != want {
		t.Fatalf("received %q first; want %q (an earlier packet should have been dropped)", p.Buf, want)
	}
}

// TestMemberlistPacketsFiltered: memberlist's datagrams are dropped on the
// sending and the receiving side across a partition and to or from a paused
// node, its streams hang, and heal and resume restore both.
func TestMemberlistPacketsFiltered(t *testing.T) {
	l := New()
	ta, aAddr := memberTransport(t, l, "a")
	tb, bAddr := memberTransport(t, l, "b")
	tc, _ := memberTransport(t, l, "c")
	write := func(mt *MemberTransport, msg, to string) {
		t.Helper()
		if _, err := mt.WriteTo([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}
	write(ta, "hello", bAddr)
	if p := nextPacket(t, tb); string(p.Buf) != "hello" || l.NodeOf(p.From.String()) != "a" {
		t.Fatalf("got %q from %s (%q)", p.Buf, p.From, l.NodeOf(p.From.String()))
	}

	l.Partition("a", "b")
	write(ta, "lost-out", bAddr) // dropped by the sender's filter
	if _, err := ta.inner.WriteTo([]byte("lost-in"), bAddr); err != nil {
		t.Fatal(err) // bypasses it: the receiver's filter must drop this one
	}
	write(tb, "lost-back", aAddr)
	write(tc, "from-c", bAddr)
	mustGetPacket(t, tb, "from-c")
	if _, err := ta.DialTimeout(bAddr, 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("stream across the partition: %v; want a timeout", err)
	}
	l.Heal("a")
	write(tb, "healed-back", aAddr)
	mustGetPacket(t, ta, "healed-back")
	write(ta, "healed", bAddr)
	mustGetPacket(t, tb, "healed")
	s, err := ta.DialTimeout(bAddr, patience)
	if err != nil {
		t.Fatalf("stream after heal: %v", err)
	}
	defer s.Close()
	select {
	case in := <-tb.StreamCh():
		defer in.Close()
		send(t, s, "stream")
		mustRecv(t, in, "stream")
	case <-time.After(patience):
		t.Fatal("no inbound stream")
	}

	l.Pause("b")
	write(tc, "to-paused", bAddr)
	write(tb, "from-paused", aAddr)
	l.Resume("b")
	write(tc, "resumed", bAddr)
	mustGetPacket(t, tb, "resumed")
	write(tb, "resumed-out", aAddr)
	mustGetPacket(t, ta, "resumed-out")
}
