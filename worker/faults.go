package worker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// Faults the platform injects into an invocation (the gateway picks the
// invocation and names the fault in HdrFault; the worker carries out the
// ones that happen around the handler). They are the ways a real platform
// makes an at-least-once handler run twice: the effect happened but the
// caller never learns it.

// faultOf reads the injected fault and, for add-delay, its delay.
func faultOf(m *nats.Msg) (string, time.Duration) {
	kind, arg, _ := strings.Cut(m.Header.Get(wire.HdrFault), ":")
	if kind == wire.FaultAddDelay {
		ms, _ := strconv.ParseInt(arg, 10, 64)
		return kind, time.Duration(ms) * time.Millisecond
	}
	return kind, 0
}

// faultResets reports whether the fault ends the sandbox (a crashed
// worker's sandbox, or one Lambda timed out, is never reused).
func faultResets(kind string) bool {
	return kind == wire.FaultCrashAfterHandler || kind == wire.FaultTimeoutAfterEffect
}

// respond sends the reply of a finished invocation, as the injected fault
// (if any) lets it through, and marks the record.
func (n *Node) respond(m, r *nats.Msg, rec *api.Record, timeout time.Duration) {
	kind, _ := faultOf(m)
	if kind != "" {
		rec.Fault = kind
	}
	switch kind {
	case wire.FaultCrashAfterHandler:
		// The handler's effect happened; the worker "dies" before the
		// result is acknowledged: the caller gets a platform error.
		n.replyStatus(m, wire.StatusError, "ServiceException", "injected fault crash-after-handler: the worker died after the handler returned; its result is lost")
	case wire.FaultDropResponse:
		// The result never reaches the caller: it waits until its
		// deadline.
	case wire.FaultTimeoutAfterEffect:
		rec.Outcome = api.OutcomeTimeout
		t := nats.NewMsg(m.Reply)
		for k, v := range r.Header {
			t.Header[k] = v
		}
		t.Header.Set(wire.HdrFuncError, "Unhandled")
		t.Data, _ = json.Marshal(map[string]string{"errorType": "Sandbox.Timedout", "errorMessage": fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", rec.RequestID, timeout.Seconds())})
		_ = m.RespondMsg(t)
	default:
		_ = m.RespondMsg(r)
	}
}
