package placement

import (
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/syncbuf"
)

// slowLink forwards TCP to target, holding every chunk for delay, or
// dropping everything while cut (the connection stays open, as behind a
// partition).
type slowLink struct {
	ln     net.Listener
	target string
	delay  atomic.Int64
	cut    atomic.Bool
}

func newSlowLink(t *testing.T, target string) *slowLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &slowLink{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go l.pipe(c, s)
			go l.pipe(s, c)
		}
	}()
	return l
}

func (l *slowLink) pipe(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if err != nil {
			return
		}
		if l.cut.Load() {
			continue
		}
		time.Sleep(time.Duration(l.delay.Load())) // the link's latency itself, not a synchronisation
		if _, err := to.Write(buf[:n]); err != nil {
			return
		}
	}
}

// syncBuffer is a log a node writes while the test polls it.
type syncBuffer = syncbuf.Buffer

// TestSlowNATSIsNotACutOff: a leader whose NATS round trips are slower
// than its quick health check (a starved machine) keeps leadership, since
// its connection still answers; one whose connection carries nothing hands
// leadership over after a lease TTL. Handing over on slowness cost a
// starved cluster an election, and every cold start during it.
func TestSlowNATSIsNotACutOff(t *testing.T) {
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	link := newSlowLink(t, strings.TrimPrefix(natsutil.URL(ns), "nats://"))
	nc, err := natsutil.Connect("nats://"+link.ln.Addr().String(), "slow-placement")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &syncBuffer{}
	n, err := startSingleWith(t, t.TempDir(), func(c *Config) {
		c.NATS = nc
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	for deadline := time.Now().Add(5 * time.Second); !n.isServing(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never served")
		}
	}
	ttl := n.cfg.Lease.TTL
	// 200 ms each way: a round trip of 400 ms fails the quick check
	// (TTL/8) and answers well within the probe's TTL.
	link.delay.Store(int64(200 * time.Millisecond))
	quick := time.Now()
	for !n.slowSeen() {
		if time.Since(quick) > ttl {
			t.Fatal("the quick check never failed on a 400 ms round trip")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Watch for three TTLs: a handover would come after one.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(logs.String(), "handing over") {
			t.Fatalf("a slow but answering connection made the leader hand over:\n%s", logs.String())
		}
	}
	link.cut.Store(true)
	cut := time.Now()
	for !strings.Contains(logs.String(), "handing over") {
		if time.Since(cut) > 4*ttl {
			t.Fatalf("a leader whose NATS carries nothing did not hand over within %s:\n%s", 4*ttl, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("handed over %s after the cut", time.Since(cut).Round(time.Millisecond))
}

// slowSeen: the quick check has failed at least once.
func (n *Node) slowSeen() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.natsDownSince.IsZero() || !n.natsAnswered.IsZero()
}
