package recordstream

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// Conn is what a Publisher needs of a NATS connection (*nats.Conn is one).
type Conn interface {
	PublishMsg(m *nats.Msg) error
	Subscribe(subject string, cb nats.MsgHandler) (*nats.Subscription, error)
	NewInbox() string
}

// Publisher publishes records on wire.SubjectRecords in batches: one
// message of newline-separated JSON records (the format wire.SplitRecords
// reads) every flushEvery or batchMax records, whichever comes first.
// Workers publish finished invocations through it, gateways their
// throttles: a message per record was a visible share of the warm path's
// CPU, and a throttle storm would cost a publish per rejected request.
//
// A record is made after its invocation was answered, so a node cut off
// from NATS just after answering would lose the record of an invocation
// that succeeded, and the checker would count one fewer in flight than
// there was. Each batch therefore carries a Nats-Msg-Id and a reply
// subject: CS_RECORDS acknowledges what it stored, and a batch left
// unacknowledged is published again, the same id each time, until it is
// stored or too old for the stream's duplicate window. The stream keeps
// one copy; core subscribers drop repeats with Seen. Until the stream has
// acknowledged anything (it may not exist: role processes before a
// gateway created it), a silent batch is not retried: it went to whoever
// listened, as a plain publish would.
type Publisher struct {
	nc    Conn
	inbox string
	sub   *nats.Subscription

	mu      sync.Mutex
	buf     []byte
	n       int
	timer   *time.Timer
	done    bool
	seq     uint64
	pending map[uint64]*batch // published, not yet acknowledged
	held    int               // bytes in pending

	acked   atomic.Bool // the stream acknowledged a batch: it exists
	retried atomic.Int64
	dropped atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

type batch struct {
	id    string
	data  []byte
	first time.Time // first published
	sent  time.Time // last published
}

const (
	flushEvery = 20 * time.Millisecond
	batchMax   = 256
	// batchBytes bounds what waits for a publish.
	batchBytes = 1 << 20
	// ackWait is how long a batch waits for the stream's acknowledgement
	// before it is published again.
	ackWait = 2 * time.Second
	// retryFor bounds a batch's retries inside the stream's duplicate
	// window (JetStream's default: 2 minutes), so a late copy is still
	// recognised as one.
	retryFor = 90 * time.Second
	// heldMax bounds the unacknowledged bytes a node keeps: past it the
	// oldest batches are given up.
	heldMax = 32 << 20
)

// NewPublisher returns a publisher on nc. Stop ends it.
func NewPublisher(nc Conn) *Publisher {
	p := &Publisher{nc: nc, pending: map[uint64]*batch{}, stop: make(chan struct{})}
	p.inbox = nc.NewInbox()
	sub, err := nc.Subscribe(p.inbox+".*", p.onAck)
	if err == nil {
		p.sub = sub
		p.wg.Add(1)
		go p.retry()
	}
	// Without the acknowledgement subscription (a closed connection)
	// batches go as plain publishes.
	return p
}

// Add queues a record.
func (p *Publisher) Add(r api.Record) {
	line, err := json.Marshal(r)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.buf = append(append(p.buf, line...), '\n')
	p.n++
	if p.n >= batchMax || len(p.buf) >= batchBytes {
		p.flushLocked()
		return
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(flushEvery, p.Flush)
	}
}

// Flush publishes what is queued now.
func (p *Publisher) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushLocked()
}

func (p *Publisher) flushLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.n == 0 {
		return
	}
	p.seq++
	now := time.Now()
	b := &batch{id: nuid.Next(), data: p.buf, first: now, sent: now}
	p.buf, p.n = nil, 0
	if p.sub != nil {
		p.pending[p.seq] = b
		p.held += len(b.data)
		for p.held > heldMax {
			p.dropOldestLocked()
		}
	}
	_ = p.nc.PublishMsg(p.msg(p.seq, b))
}

func (p *Publisher) msg(seq uint64, b *batch) *nats.Msg {
	m := nats.NewMsg(wire.SubjectRecords)
	m.Header.Set(nats.MsgIdHdr, b.id)
	if p.sub != nil {
		m.Reply = p.inbox + "." + strconv.FormatUint(seq, 10)
	}
	m.Data = b.data
	return m
}

func (p *Publisher) dropOldestLocked() {
	var oldest uint64
	for s := range p.pending {
		if oldest == 0 || s < oldest {
			oldest = s
		}
	}
	if b := p.pending[oldest]; b != nil {
		p.held -= len(b.data)
		delete(p.pending, oldest)
		p.dropped.Add(1)
	}
}

// ack is the part of JetStream's publish acknowledgement read here.
type ack struct {
	Stream string `json:"stream"`
	Error  *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

func (p *Publisher) onAck(m *nats.Msg) {
	seq, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
	if err != nil {
		return
	}
	if m.Header.Get("Status") == "503" {
		// No responders: no stream and no subscriber took it. There is
		// nobody to deliver it to later either.
		p.settle(seq)
		return
	}
	var a ack
	if json.Unmarshal(m.Data, &a) != nil || a.Error != nil || a.Stream == "" {
		return // not stored: the retry publishes it again
	}
	p.acked.Store(true)
	p.settle(seq)
}

func (p *Publisher) settle(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.pending[seq]; b != nil {
		p.held -= len(b.data)
		delete(p.pending, seq)
	}
}

// retry publishes again the batches the stream has not acknowledged.
func (p *Publisher) retry() {
	defer p.wg.Done()
	t := time.NewTicker(ackWait / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.resend(now)
		}
	}
}

func (p *Publisher) resend(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	durable := p.acked.Load()
	for seq, b := range p.pending {
		if now.Sub(b.sent) < ackWait {
			continue
		}
		if !durable || now.Sub(b.first) > retryFor {
			if durable {
				p.dropped.Add(1)
			}
			p.held -= len(b.data)
			delete(p.pending, seq)
			continue
		}
		b.sent = now
		p.retried.Add(1)
		_ = p.nc.PublishMsg(p.msg(seq, b))
	}
}

// PublisherStats says how the publisher's batches fared.
type PublisherStats struct {
	Pending int   // published, awaiting the stream's acknowledgement
	Retried int64 // publishes of a batch again
	Dropped int64 // batches given up unacknowledged (too old, or too many held)
	Stored  bool  // the stream has acknowledged a batch
}

// Stats returns the publisher's counts.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	n := len(p.pending)
	p.mu.Unlock()
	return PublisherStats{Pending: n, Retried: p.retried.Load(), Dropped: p.dropped.Load(), Stored: p.acked.Load()}
}

// Stop flushes what is queued and drops later records. Batches still
// unacknowledged are not retried after it.
func (p *Publisher) Stop() {
	p.mu.Lock()
	p.flushLocked()
	already := p.done
	p.done = true
	p.mu.Unlock()
	if already {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
}

// Seen recognises the batches a core subscriber of wire.SubjectRecords
// has already had: a Publisher publishes a batch again when the stream's
// acknowledgement is late, with the same Nats-Msg-Id. It remembers the
// last seenMax ids. Safe for concurrent use.
type Seen struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

const seenMax = 8192

// First says whether m is the first copy of its batch seen here. A
// message without an id is always first.
func (s *Seen) First(m *nats.Msg) bool {
	id := m.Header.Get(nats.MsgIdHdr)
	if id == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = make(map[string]struct{}, seenMax)
		s.ring = make([]string, seenMax)
	}
	if _, ok := s.ids[id]; ok {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % seenMax
	s.ids[id] = struct{}{}
	return true
}
