package gateway

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// throttleRecords publishes a record of every 429 the gateway answers on
// the records subject, where workers publish finished invocations, so a
// checker can hold each throttle against the limits at that instant. The
// wire format is the workers': newline-separated JSON records, one NATS
// message per batch (a throttle storm would otherwise cost a publish per
// rejected request, the cheapest answer the gateway has).
type throttleRecords struct {
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
	// recordBufMax bounds what waits for a publish: a batch is at most
	// recordBatch records of a few hundred bytes each.
	recordBufMax = 1 << 20
)

func newThrottleRecords(nc *nats.Conn) *throttleRecords { return &throttleRecords{nc: nc} }

func (b *throttleRecords) add(r api.Record) {
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
		b.timer = time.AfterFunc(recordFlush, b.flush)
	}
}

func (b *throttleRecords) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *throttleRecords) flushLocked() {
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
func (b *throttleRecords) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.done = true
}
