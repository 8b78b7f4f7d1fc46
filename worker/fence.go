package worker

import (
	"sync/atomic"
	"time"
)

// Self-fencing. A worker that was paused (SIGSTOP, a VM freeze, a long GC
// stall) may have been declared dead meanwhile, its sandboxes released by
// placement and their capacity granted elsewhere. If it then ran the warm
// requests queued in its socket, the account could exceed its limit. So a
// worker watches its own clock: a gap longer than FenceAfter between two
// ticks means it was not running, and it starts nothing on its existing
// sandboxes until a reconcile with placement has told it which of them are
// still its own. Cold starts on fresh grants are unaffected: placement
// granted those after the fact.

// DefaultFenceAfter is the pause that fences a worker. A paused worker keeps
// its NATS connection, so placement releases it only after 3 s of silence
// (placement.unreachableAfter): fencing at 1 s happens well before its
// capacity can be reused, and a merely starved process rarely stalls 1 s.
const DefaultFenceAfter = time.Second

const fenceTick = 50 * time.Millisecond

type fence struct {
	after  time.Duration
	lastNs atomic.Int64 // last tick, Unix ns
	fenced atomic.Bool
}

func (f *fence) init(after time.Duration) {
	if after <= 0 {
		after = DefaultFenceAfter
	}
	f.after = after
	f.lastNs.Store(time.Now().UnixNano())
}

// tick records that the worker is running; a late tick fences it.
func (f *fence) tick(now time.Time) {
	if now.UnixNano()-f.lastNs.Swap(now.UnixNano()) > int64(f.after) {
		f.fenced.Store(true)
	}
}

// check reports whether the worker must not start invocations on existing
// sandboxes. It also catches a pause the ticker has not seen yet (requests
// queued during the pause may be handled before the ticker runs).
func (f *fence) check(now time.Time) bool {
	if now.UnixNano()-f.lastNs.Load() > int64(f.after) {
		f.fenced.Store(true)
	}
	return f.fenced.Load()
}

// lift ends fencing after a reconcile succeeded.
func (f *fence) lift() { f.fenced.Store(false) }
