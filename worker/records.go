package worker

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// recordBatcher publishes invocation records in batches: one NATS message
// of newline-separated JSON records every recordFlush or recordBatch
// records, whichever comes first. A message per invocation was a visible
// share of the warm path's CPU.
type recordBatcher struct {
	nc    *nats.Conn
	mu    sync.Mutex
	buf   []byte
	n     int
	timer *time.Timer
	done  bool
}

const (
	recordFlush = 20 * time.Millisecond
	recordBatch = 256
)

func newRecordBatcher(nc *nats.Conn) *recordBatcher { return &recordBatcher{nc: nc} }

func (b *recordBatcher) add(r api.Record) {
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
	if b.n >= recordBatch {
		b.flushLocked()
		return
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(recordFlush, b.flush)
	}
}

func (b *recordBatcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *recordBatcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if b.n == 0 {
		return
	}
	_ = b.nc.Publish(wire.SubjectRecords, b.buf)
	b.buf, b.n = nil, 0
}

// stop flushes what is pending and drops later records.
func (b *recordBatcher) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.done = true
}
