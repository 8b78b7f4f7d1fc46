package gateway

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The timeline is the gateway's record of what happened to the cluster,
// as this gateway saw it: nodes going down and up, leader changes, lost
// and regained quorum, deploys, limit changes, throttle storms and
// injected faults. It is a bounded ring (the oldest events fall off) served
// at PathTimeline; the dashboard and `coldstart top` poll it.

// PathTimeline serves the timeline: ?since=SEQ returns the events after
// SEQ (0 or absent: all that are kept).
const PathTimeline = "/coldstart/v1/timeline"

// SubjectTimeline takes events from whoever injects a fault outside the
// gateway (the chaos API of `coldstart up`, a drill): a JSON
// TimelineEvent with at least Kind. Every gateway adds it to its timeline.
const SubjectTimeline = "cs.timeline"

// Kinds of TimelineEvent.
const (
	EventNodeDown       = "node_down"
	EventNodeUp         = "node_up"
	EventLeaderChange   = "leader_change"
	EventQuorumLost     = "quorum_lost"
	EventQuorumRegained = "quorum_regained"
	EventDeploy         = "deploy"
	EventFunctionCreate = "function_created"
	EventFunctionDelete = "function_deleted"
	EventLimitChange    = "limit_change"
	EventThrottleStorm  = "throttle_storm_start"
	EventThrottleCalm   = "throttle_storm_end"
	EventFaultInjected  = "fault_injected"
	EventFaultCleared   = "fault_cleared"
)

// TimelineEvent is one entry of the timeline.
type TimelineEvent struct {
	Seq      uint64 `json:"seq"`
	TimeMs   int64  `json:"time_ms"` // Unix milliseconds
	Kind     string `json:"kind"`
	Node     string `json:"node,omitempty"`
	Function string `json:"function,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// TimelinePage is PathTimeline's answer. Next is the Seq to pass as since
// next time.
type TimelinePage struct {
	Events []TimelineEvent `json:"events"`
	Next   uint64          `json:"next"`
}

// timelineCap bounds the ring: a few hours of an eventful drill.
const timelineCap = 1024

type timeline struct {
	mu     sync.Mutex
	events []TimelineEvent // ring, oldest first once full
	head   int             // index of the oldest event once full
	seq    uint64
	now    func() time.Time
}

func newTimeline(now func() time.Time) *timeline {
	return &timeline{now: now, events: make([]TimelineEvent, 0, timelineCap)}
}

// add appends an event, stamping its sequence number (and time, if unset).
func (t *timeline) add(ev TimelineEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	ev.Seq = t.seq
	if ev.TimeMs == 0 {
		ev.TimeMs = t.now().UnixMilli()
	}
	if len(t.events) < timelineCap {
		t.events = append(t.events, ev)
		return
	}
	t.events[t.head] = ev
	t.head = (t.head + 1) % timelineCap
}

// since returns the kept events with Seq > seq, oldest first.
func (t *timeline) since(seq uint64) TimelinePage {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []TimelineEvent{}
	for i := 0; i < len(t.events); i++ {
		ev := t.events[(t.head+i)%len(t.events)]
		if ev.Seq > seq {
			out = append(out, ev)
		}
	}
	return TimelinePage{Events: out, Next: t.seq}
}

func (t *timeline) handle(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, errInvalidParam("since must be a timeline sequence number"))
			return
		}
		since = v
	}
	writeJSON(w, http.StatusOK, t.since(since))
}

// AnnounceTimeline publishes ev on SubjectTimeline, for a fault injected
// outside the gateways (a chaos kill, pause or partition): every gateway
// adds it to its timeline. The connection needs publish rights on the
// subject (placement nodes have them).
func AnnounceTimeline(nc *nats.Conn, ev TimelineEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return nc.Publish(SubjectTimeline, b)
}

// kindPattern bounds what a NATS publisher may call an event.
var kindPattern = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

// maxExternalEvent bounds an event on SubjectTimeline.
const maxExternalEvent = 4 << 10

// handleExternal takes an event published on SubjectTimeline; anything
// that is not one is ignored (the subject is open to every node).
func (t *timeline) handleExternal(m *nats.Msg) {
	if len(m.Data) > maxExternalEvent {
		return
	}
	var ev TimelineEvent
	if json.Unmarshal(m.Data, &ev) != nil || !kindPattern.MatchString(ev.Kind) {
		return
	}
	ev.Seq, ev.TimeMs = 0, 0 // the gateway's clock and numbering, not the sender's
	ev.Node, ev.Function, ev.Detail = clipTo(ev.Node, 128), clipTo(ev.Function, 128), clipTo(ev.Detail, 512)
	t.add(ev)
}

func clipTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
