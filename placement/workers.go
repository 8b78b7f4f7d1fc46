package placement

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// WorkerAPI is what the leader asks of workers. It is an interface so that
// the leader's reclaim and trim logic is tested without a cluster.
type WorkerAPI interface {
	// Retire asks a worker to retire an idle sandbox for a reclaim.
	Retire(worker string, req wire.RetireRequest) (wire.RetireAnswer, error)
	// Drop asks a worker to drop sandboxes above a lowered limit: idle
	// ones at once, busy ones when their invocation ends. It returns how
	// many were busy.
	Drop(worker string, ids []string) (draining int, err error)
}

// reclaimTimeout bounds each worker's answer during a reclaim. A worker that
// misses it is skipped, which can turn a reclaim into a throttle: it is long
// enough for a starved worker, short enough for the cold path's budget.
const reclaimTimeout = 400 * time.Millisecond

type natsWorkers struct{ nc *nats.Conn }

func (w natsWorkers) Retire(worker string, req wire.RetireRequest) (wire.RetireAnswer, error) {
	b, _ := json.Marshal(req)
	m, err := w.nc.Request(wire.WorkerSubject(worker, wire.WorkerRetire), b, reclaimTimeout)
	if err != nil {
		return wire.RetireAnswer{}, err
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
