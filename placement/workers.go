package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// WorkerAPI is what the leader asks of workers. It is an interface so that
// the leader's reclaim and trim logic is tested without a cluster.
type WorkerAPI interface {
	// Retire asks a worker to retire an idle sandbox for a reclaim,
	// waiting at most timeout for its answer.
	Retire(worker string, req wire.RetireRequest, timeout time.Duration) (wire.RetireAnswer, error)
	// Drop asks a worker to drop sandboxes above a lowered limit: idle
	// ones at once, busy ones when their invocation ends. It returns how
	// many were busy.
	Drop(worker string, ids []string) (draining int, err error)
}

// reclaimTimeout bounds each worker's answer during a reclaim. A worker that
// misses it is skipped, which can turn a reclaim into a throttle: it is long
// enough for a starved worker, short enough for the cold path's budget.
const reclaimTimeout = 400 * time.Millisecond

// lateRetire is how long an answer that missed its request's timeout is
// still awaited: a worker that retired a victim for a request nobody waits
// for any more holds a slot that no grant will release.
const lateRetire = 2 * time.Second

type natsWorkers struct {
	nc *nats.Conn
	// late is told (on a goroutine of its own) of a victim retired by an
	// answer that came after its request timed out, so that its slot comes back at once rather than
	// when the worker releases it itself (retiredRelease, 1 s): under
	// overload those orphans showed as 429s below the limit.
	late func(id string)
}

func (w natsWorkers) Retire(worker string, req wire.RetireRequest, timeout time.Duration) (wire.RetireAnswer, error) {
	b, _ := json.Marshal(req)
	inbox := w.nc.NewInbox()
	sub, err := w.nc.SubscribeSync(inbox)
	if err != nil {
		return wire.RetireAnswer{}, err
	}
	if err := w.nc.PublishRequest(wire.WorkerSubject(worker, wire.WorkerRetire), inbox, b); err != nil {
		sub.Unsubscribe()
		return wire.RetireAnswer{}, err
	}
	m, err := sub.NextMsg(timeout)
	if errors.Is(err, nats.ErrTimeout) && w.late != nil {
		go func() {
			defer sub.Unsubscribe()
			m, err := sub.NextMsg(lateRetire)
			var a wire.RetireAnswer
			if err == nil && json.Unmarshal(m.Data, &a) == nil && a.OK && a.ID != "" {
				w.late(a.ID)
			}
		}()
		return wire.RetireAnswer{}, err
	}
	sub.Unsubscribe()
	if err != nil {
		return wire.RetireAnswer{}, err
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return wire.RetireAnswer{}, nats.ErrNoResponders
	}
	var a wire.RetireAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return wire.RetireAnswer{}, fmt.Errorf("retire answer from %s: %w", worker, err)
	}
	return a, nil
}

func (w natsWorkers) Drop(worker string, ids []string) (int, error) {
	b, _ := json.Marshal(wire.DropRequest{IDs: ids})
	m, err := w.nc.Request(wire.WorkerSubject(worker, wire.WorkerDrop), b, time.Second)
	if err != nil {
		return 0, err
	}
	var a wire.RetireAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return 0, fmt.Errorf("drop answer from %s: %w", worker, err)
	}
	return a.Draining, nil
}
