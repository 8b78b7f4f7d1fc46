package placement

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/natstest"
	"github.com/coldstart-dev/coldstart/wire"
)

// A worker that retires a victim after the leader stopped waiting for its
// answer: nobody grants in the victim's place, so the late answer itself
// must bring its slot back (late), not the worker's own release a second
// later.
func TestLateRetireAnswerReleasesItsVictim(t *testing.T) {
	nc := natstest.Conn(t)
	answer := make(chan *nats.Msg, 1)
	if _, err := nc.Subscribe(wire.WorkerSubject("w1", wire.WorkerRetire), func(m *nats.Msg) { answer <- m }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	late := make(chan string, 1)
	w := natsWorkers{nc: nc, late: func(id string) { late <- id }}
	if _, err := w.Retire("w1", wire.RetireRequest{ID: "v1"}, 20*time.Millisecond); err == nil {
		t.Fatal("an unanswered retire did not time out")
	}
	m := <-answer // the worker answers only now
	b, _ := json.Marshal(wire.RetireAnswer{OK: true, ID: "v1"})
	m.Respond(b)
	select {
	case id := <-late:
		if id != "v1" {
			t.Fatalf("late answer released %q, want v1", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the late answer released nothing")
	}
	// An answer in time is returned, and nothing is released late.
	go func() {
		m := <-answer
		b, _ := json.Marshal(wire.RetireAnswer{OK: true, ID: "v2"})
		m.Respond(b)
	}()
	if a, err := w.Retire("w1", wire.RetireRequest{ID: "v2"}, 5*time.Second); err != nil || !a.OK || a.ID != "v2" {
		t.Fatalf("retire answered in time: %+v %v", a, err)
	}
	// No responders is an error at once, not a wait.
	start := time.Now()
	if _, err := w.Retire("nobody", wire.RetireRequest{ID: "v3"}, 5*time.Second); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("retire of a worker not there: %v after %s", err, time.Since(start))
	}
	select {
	case id := <-late:
		t.Fatalf("%s released late though answered in time", id)
	default:
	}
}
