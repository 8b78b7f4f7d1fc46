package wire

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// Publisher is what a RecordBatcher publishes through (*nats.Conn is one).
type Publisher interface {
	Publish(subject string, data []byte) error
}

// RecordBatcher publishes records on SubjectRecords in batches: one message
// of newline-separated JSON records (the format SplitRecords reads) every
// recordFlush or recordBatch records, whichever comes first. Workers
// publish finished invocations through it, gateways their throttles: a
// message per record was a visible share of the warm path's CPU, and a
// throttle storm would cost a publish per rejected request.
type RecordBatcher struct {
	p     Publisher
	mu    sync.Mutex
	buf   []byte
	n     int
	timer *time.Timer
	done  bool
}

const (
	recordFlush = 20 * time.Millisecond
	recordBatch = 256
	// recordBufMax bounds what waits for a publish.
	recordBufMax = 1 << 20
)

// NewRecordBatcher returns a batcher publishing through p.
func NewRecordBatcher(p Publisher) *RecordBatcher { return &RecordBatcher{p: p} }

// Add queues a record.
func (b *RecordBatcher) Add(r api.Record) {
	line, err := json.Marshal(r)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.buf = append(append(b.buf, line...), '\n')
	b.n++
	if b.n >= recordBatch || len(b.buf) >= recordBufMax {
		b.flushLocked()
		return
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(recordFlush, b.Flush)
	}
}

// Flush publishes what is queued now.
func (b *RecordBatcher) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *RecordBatcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if b.n == 0 {
		return
	}
	_ = b.p.Publish(SubjectRecords, b.buf)
	b.buf, b.n = nil, 0
}

// Stop flushes what is queued and drops later records.
func (b *RecordBatcher) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.done = true
}
