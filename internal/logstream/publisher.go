package logstream

import (
	"bytes"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	// flushEvery bounds how long a line waits before it is published.
	flushEvery = 50 * time.Millisecond
	// flushBytes is the batch size that is published without waiting.
	flushBytes = 64 << 10
	// maxBuffered bounds the lines waiting to be published, over all
	// subjects; beyond it lines are dropped, not waited for.
	maxBuffered = 4 << 20
	// MaxLine is the longest line kept (CloudWatch Logs' event limit);
	// longer lines are cut.
	MaxLine = 256 << 10
)

// Publisher batches entries per function and publishes them on
// SubjectFor with core NATS: Add never blocks on the network, and when
// the buffer is full it drops the entry and counts it. Logs must never
// slow an invocation down.
type Publisher struct {
	nc *nats.Conn

	mu       sync.Mutex
	batches  map[string][]byte // subject -> newline-separated JSON
	buffered int
	closed   bool

	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
	dropped atomic.Uint64
}

// NewPublisher starts a publisher on nc. Close it to publish what is
// buffered.
func NewPublisher(nc *nats.Conn) *Publisher {
	p := newPublisher(nc)
	go p.run()
	return p
}

func newPublisher(nc *nats.Conn) *Publisher {
	return &Publisher{
		nc:      nc,
		batches: map[string][]byte{},
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// Add queues an entry (a zero Time is now). It never blocks.
func (p *Publisher) Add(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(e.Line) > MaxLine {
		e.Line = e.Line[:MaxLine]
	}
	b, err := json.Marshal(e)
	if err != nil {
		p.dropped.Add(1)
		return
	}
	subject := SubjectFor(e.Account, e.Function)
	p.mu.Lock()
	if p.closed || p.buffered+len(b)+1 > maxBuffered {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	batch := append(append(p.batches[subject], b...), '\n')
	p.batches[subject] = batch
	p.buffered += len(b) + 1
	full := len(batch) >= flushBytes
	p.mu.Unlock()
	if full {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped is the number of entries lost: a full buffer, a publish the
// connection refused, an entry added after Close.
func (p *Publisher) Dropped() uint64 { return p.dropped.Load() }

// Close publishes what is buffered and stops; Adds after it are dropped.
func (p *Publisher) Close() {
	p.once.Do(func() {
		close(p.done)
		<-p.stopped
		// Hand the last batches to the server before the caller, often
		// a process shutting down, closes the connection.
		_ = p.nc.FlushTimeout(2 * time.Second)
	})
}

func (p *Publisher) run() {
	defer close(p.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.kick:
		case <-p.done:
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			p.flush()
			return
		}
		p.flush()
	}
}

// flush publishes every batch. A batch is cut at flushBytes-sized
// boundaries of whole lines, so one message stays far below the
// server's max payload.
func (p *Publisher) flush() {
	p.mu.Lock()
	if p.buffered == 0 {
		p.mu.Unlock()
		return
	}
	batches := p.batches
	p.batches = make(map[string][]byte, len(batches))
	p.buffered = 0
	p.mu.Unlock()
	for subject, b := range batches {
		for len(b) > 0 {
			n := cut(b, flushBytes)
			if err := p.nc.Publish(subject, b[:n]); err != nil {
				p.dropped.Add(uint64(bytes.Count(b[:n], []byte{'\n'})))
			}
			b = b[n:]
		}
	}
}

// cut returns the length of the first run of whole lines of b of at most
// max bytes (or the first line, if it alone is longer).
func cut(b []byte, max int) int {
	if len(b) <= max {
		return len(b)
	}
	n := 0
	for n < len(b) {
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			return len(b)
		}
		next := n + i + 1
		if next > max && n > 0 {
			return n
		}
		n = next
	}
	return n
}
