package placement

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/coldstart-dev/coldstart/quota"
)

var jsonUnmarshal = json.Unmarshal

// FSM is the Raft state machine: a thin, locked dispatcher over the Ledger.
type FSM struct {
	mu sync.RWMutex
	l  *Ledger
}

// NewFSM returns an FSM over an empty ledger.
func NewFSM(rate quota.Rate, defaultLimit int) *FSM {
	return &FSM{l: NewLedger(rate, defaultLimit)}
}

// Result is what Apply returns through raft's ApplyFuture.Response().
type Result struct {
	Value any
	Err   error
}

// Apply implements raft.FSM.
func (f *FSM) Apply(e *raft.Log) any {
	t, body, err := Decode(e.Data)
	if err != nil {
		return Result{Err: err}
	}
	f.mu.Lock()
	v, err := f.l.Apply(t, body, e.Index)
	f.mu.Unlock()
	return Result{Value: v, Err: err}
}

// Read runs fn under the read lock.
func (f *FSM) Read(fn func(*Ledger)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.l)
}

// Snapshot implements raft.FSM; it copies the state by value (JSON) under
// the read lock so Persist can run without it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	b, err := json.Marshal(&f.l.s)
	f.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM. A snapshot that does not decode or does not
// validate is rejected with ErrCorruptSnapshot and the current state kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s State
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	if err := Validate(&s); err != nil {
		return err
	}
	f.mu.Lock()
	f.l.load(s)
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
