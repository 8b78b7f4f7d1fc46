package recordstream

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// lossy is a connection whose publishes can be lost on the way, as when
// a node is cut off from NATS after answering: swallow drops them whole;
// deaf keeps the message and drops its reply subject, so the stream
// stores it and its acknowledgement goes nowhere.
type lossy struct {
	*nats.Conn
	swallow, deaf atomic.Bool
	mu            sync.Mutex
	sent          int
}

func (l *lossy) PublishMsg(m *nats.Msg) error {
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
	if l.swallow.Load() {
		return nil
	}
	if l.deaf.Load() {
		c := *m
		c.Reply = ""
		return l.Conn.PublishMsg(&c)
	}
	return l.Conn.PublishMsg(m)
}

func (l *lossy) publishes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A full batch goes at once, a partial one within the flush interval, and
// nothing after Stop.
func TestPublisherBatches(t *testing.T) {
	nc := jsConn(t)
	l := &lossy{Conn: nc}
	var mu sync.Mutex
	var msgs, recs int
	sub, err := nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		mu.Lock()
		msgs++
		recs += len(wire.SplitRecords(m.Data))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return msgs, recs }
	p := NewPublisher(l)
	for i := 0; i < batchMax; i++ {
		p.Add(api.Record{RequestID: "r", Outcome: api.OutcomeOK})
	}
	if n := l.publishes(); n != 1 {
		t.Fatalf("a full batch: %d publishes, want 1 at once", n)
	}
	waitUntil(t, "the full batch", func() bool { m, r := count(); return m == 1 && r == batchMax })
	p.Add(api.Record{RequestID: "late"})
	waitUntil(t, "the partial batch's flush", func() bool { m, r := count(); return m == 2 && r == batchMax+1 })
	p.Add(api.Record{RequestID: "pending"})
	p.Stop()
	p.Add(api.Record{RequestID: "after stop"})
	p.Flush()
	p.Stop()
	waitUntil(t, "the batch Stop flushed", func() bool { m, r := count(); return m == 3 && r == batchMax+2 })
	if n := l.publishes(); n != 3 {
		t.Fatalf("%d publishes after Stop, want 3 (the pending one flushed, none after)", n)
	}
}

// The records a node published while cut off reach the stream once the
// connection carries them again, each once; an acknowledged batch is
// never published twice.
func TestPublisherRepublishesWhatTheStreamDidNotStore(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	l := &lossy{Conn: nc}
	p := NewPublisher(l)
	defer p.Stop()
	now := time.Now()
	p.Add(rec(acct, "f", "before", now))
	p.Flush()
	waitUntil(t, "the first batch's acknowledgement", func() bool { st := p.Stats(); return st.Stored && st.Pending == 0 })
	if l.publishes() != 1 {
		t.Fatalf("an acknowledged batch was published %d times", l.publishes())
	}

	// Cut off: these batches are lost on the way.
	l.swallow.Store(true)
	p.Add(rec(acct, "f", "cut-1", now))
	p.Flush()
	p.Add(rec(acct, "f", "cut-2", now))
	p.Add(rec(acct, "f", "cut-3", now))
	p.Flush()
	if st := p.Stats(); st.Pending != 2 {
		t.Fatalf("pending while cut off: %+v", st)
	}
	// Connected again: the next retry stores them.
	l.swallow.Store(false)
	stored(t, nc, 3)
	waitUntil(t, "their acknowledgements", func() bool { return p.Stats().Pending == 0 })
	got := readIDs(t, nc, Filter{})
	slices.Sort(got)
	if want := []string{"before", "cut-1", "cut-2", "cut-3"}; !slices.Equal(got, want) {
		t.Fatalf("the stream holds %v, want %v", got, want)
	}
	if st := p.Stats(); st.Retried < 2 || st.Dropped != 0 {
		t.Fatalf("stats %+v: want the two lost batches retried, none dropped", st)
	}
}

// A batch the stream stored whose acknowledgement was lost is published
// again: the stream keeps one copy, and a core subscriber using Seen
// sees it once although it receives it twice.
func TestPublisherRepeatIsStoredOnceAndSeenOnce(t *testing.T) {
	nc := jsConn(t)
	if err := Ensure(testCtx(t), nc, Config{}); err != nil {
		t.Fatal(err)
	}
	var seen Seen
	var mu sync.Mutex
	raw, first := 0, 0
	sub, err := nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		raw++
		if seen.First(m) {
			first++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	l := &lossy{Conn: nc}
	p := NewPublisher(l)
	defer p.Stop()
	p.Add(rec(acct, "f", "warm-up", time.Now()))
	p.Flush()
	waitUntil(t, "the stream's first acknowledgement", func() bool { return p.Stats().Stored && p.Stats().Pending == 0 })

	l.deaf.Store(true)
	p.Add(rec(acct, "f", "twice", time.Now()))
	p.Flush()
	waitUntil(t, "the stored copy", func() bool { mu.Lock(); defer mu.Unlock(); return raw == 2 })
	l.deaf.Store(false)
	waitUntil(t, "the repeat's acknowledgement", func() bool { return p.Stats().Pending == 0 })
	waitUntil(t, "the repeat", func() bool { mu.Lock(); defer mu.Unlock(); return raw >= 3 })
	if st := p.Stats(); st.Retried != 1 {
		t.Fatalf("stats %+v: want one repeat", st)
	}
	mu.Lock()
	if raw != 3 || first != 2 {
		t.Fatalf("the subscriber received %d batches and saw %d first, want 3 and 2", raw, first)
	}
	mu.Unlock()
	got := readIDs(t, nc, Filter{})
	if want := []string{"warm-up", "twice"}; !slices.Equal(got, want) {
		t.Fatalf("the stream holds %v, want %v (the repeat is a duplicate)", got, want)
	}
}

// Without the stream a batch is a plain publish: it goes to whoever
// listens and is not repeated (nothing would ever acknowledge it).
func TestPublisherWithoutStreamDoesNotRepeat(t *testing.T) {
	nc := jsConn(t)
	got := make(chan []byte, 16)
	sub, err := nc.Subscribe(wire.SubjectRecords, func(m *nats.Msg) { got <- m.Data })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	l := &lossy{Conn: nc}
	p := NewPublisher(l)
	defer p.Stop()
	p.Add(rec(acct, "f", "plain", time.Now()))
	p.Flush()
	select {
	case b := <-got:
		if rs := wire.SplitRecords(b); len(rs) != 1 || rs[0].RequestID != "plain" {
			t.Fatalf("received %v", rs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber never received the batch")
	}
	// The batch is given up once its acknowledgement is overdue.
	waitUntil(t, "the unacknowledged batch to be given up", func() bool { return p.Stats().Pending == 0 })
	if st := p.Stats(); st.Retried != 0 || st.Stored || l.publishes() != 1 {
		t.Fatalf("stats %+v after %d publishes: want one publish, no repeat", st, l.publishes())
	}
}

// Seen forgets the oldest ids past its bound and passes messages without
// an id.
func TestSeen(t *testing.T) {
	var s Seen
	msg := func(id string) *nats.Msg {
		m := nats.NewMsg(wire.SubjectRecords)
		if id != "" {
			m.Header.Set(nats.MsgIdHdr, id)
		}
		return m
	}
	if !s.First(msg("a")) || s.First(msg("a")) {
		t.Fatal("a repeat was not recognised")
	}
	if !s.First(msg("")) || !s.First(msg("")) {
		t.Fatal("a message without an id must always pass")
	}
	for i := 0; i < seenMax; i++ {
		s.First(msg(string(rune('b'+i%20)) + time.Duration(i).String()))
	}
	if !s.First(msg("a")) {
		t.Fatal("an id older than the bound is still remembered")
	}
}
