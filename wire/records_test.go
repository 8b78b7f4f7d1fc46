package wire

import (
	"sync"
	"testing"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

type fakePub struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (f *fakePub) Publish(subject string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if subject != SubjectRecords {
		panic(subject)
	}
	f.msgs = append(f.msgs, data)
	return nil
}

func (f *fakePub) records() (msgs, recs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.msgs {
		recs += len(SplitRecords(m))
	}
	return len(f.msgs), recs
}

// A full batch goes at once, a partial one within the flush interval, and
// nothing after Stop.
func TestRecordBatcher(t *testing.T) {
	p := &fakePub{}
	b := NewRecordBatcher(p)
	for i := 0; i < recordBatch; i++ {
		b.Add(api.Record{RequestID: "r", Outcome: api.OutcomeOK})
	}
	if msgs, recs := p.records(); msgs != 1 || recs != recordBatch {
		t.Fatalf("a full batch: %d messages, %d records", msgs, recs)
	}
	b.Add(api.Record{RequestID: "late"})
	deadline := time.Now().Add(2 * time.Second)
	for {
		if msgs, recs := p.records(); msgs == 2 && recs == recordBatch+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a partial batch was never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	b.Add(api.Record{RequestID: "pending"})
	b.Stop()
	b.Add(api.Record{RequestID: "after stop"})
	b.Flush()
	if msgs, recs := p.records(); msgs != 3 || recs != recordBatch+2 {
		t.Fatalf("after Stop: %d messages, %d records (want the pending one flushed, none after)", msgs, recs)
	}
}
