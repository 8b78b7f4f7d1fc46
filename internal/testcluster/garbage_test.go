package testcluster_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/internal/testcluster"
	"github.com/coldstart-dev/coldstart/wire"
)

// TestGarbageOnNATSSubjects: every internal subject answers garbage with a
// typed error (or ignores it, for publish-only subjects) and the cluster
// keeps serving.
func TestGarbageOnNATSSubjects(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Gateways: 1, Workers: 1})
	url := c.GatewayURL(0)
	createFunction(t, url, synthetic("f", "1ms", "1ms"))
	// As a placement node: the one role allowed on every subject below.
	nc := c.Client(natsutil.RolePlacement, "garbage")
	junk := [][]byte{nil, []byte("\x00\xff"), []byte(`{"op":"create_sandbox"}`), []byte(`{"op":"nope"}`), []byte(`[1,2,3]`), []byte(`{"op":"create_function","function":{"name":""}}`)}
	for _, subj := range []string{wire.SubjectLeader, wire.SubjectRead} {
		for _, j := range junk {
			m, err := nc.Request(subj, j, 2*time.Second)
			if err != nil {
				t.Fatalf("%s %q: %v", subj, j, err)
			}
			var r wire.Response
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("%s %q: answer does not parse: %v", subj, j, err)
			}
			if r.Error == nil && r.Snapshot == nil {
				t.Fatalf("%s %q: no error and no snapshot: %s", subj, j, m.Data)
			}
		}
	}
	for _, j := range junk {
		nc.Publish(wire.SubjectEvents, j)
		nc.Publish(wire.SubjectRecords, j)
		msg := nats.NewMsg(wire.InvokeSubject("worker-1"))
		msg.Data = j
		if m, err := nc.RequestMsg(msg, 2*time.Second); err != nil || m.Header.Get(wire.HdrStatus) != wire.StatusError {
			t.Fatalf("invoke garbage %q: %v %v", j, err, m)
		}
	}
	if r := invoke(t, url, "f", `{}`); r.Status != 200 {
		t.Fatalf("cluster stopped serving after garbage: %d %s", r.Status, r.ErrorType)
	}
}
