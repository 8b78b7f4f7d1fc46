package worker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
)

// invocation is what the synthetic runtime decided for one request.
type invocation struct {
	duration time.Duration
	fail     string // function error message, "" for success
}

// syntheticPayload holds the optional payload fields the synthetic runtime
// obeys, so that traces and tests can drive each invocation.
type syntheticPayload struct {
	DurationMs *float64 `json:"duration_ms"`
	Fail       string   `json:"fail"`
}

const maxDurationMs = 901_000

func (n *Node) plan(spec *wire.Spec, payload []byte) invocation {
	inv := invocation{}
	// Decode only payloads that mention a control field: the common case
	// stays a byte scan.
	if bytes.Contains(payload, []byte(`"duration_ms"`)) || bytes.Contains(payload, []byte(`"fail"`)) {
		var p syntheticPayload
		if json.Unmarshal(payload, &p) == nil {
			// Bounded by Lambda's 900 s maximum timeout; anything longer
			// times out anyway and must not overflow a Duration.
			if p.DurationMs != nil && *p.DurationMs >= 0 && *p.DurationMs <= maxDurationMs {
				inv.duration = time.Duration(*p.DurationMs * float64(time.Millisecond))
				inv.fail = p.Fail
				return inv
			}
			inv.fail = p.Fail
		}
	}
	n.mu.Lock()
	inv.duration = spec.Profile.Duration.Draw(n.rnd)
	n.mu.Unlock()
	return inv
}

// run executes one invocation on sb (busy) and replies to the gateway. gen
// is the lease generation it started in; fenced is closed when the lease
// runs out under it.
func (n *Node) run(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received time.Time, gen uint64, fenced <-chan struct{}) {
	if !spec.Synthetic && spec.CodeSha256 != "" {
		n.runProcess(m, sb, spec, cold, received, gen, fenced)
		return
	}
	reqID := m.Header.Get(wire.HdrRequestID)
	var initDur time.Duration
	if cold {
		n.mu.Lock()
		ph := spec.Profile.DrawCold(n.rnd)
		n.mu.Unlock()
		initDur = ph.Total()
		_ = waitOrFence(n.scaled(ph.SandboxCreate), fenced) &&
			waitOrFence(n.scaled(ph.RuntimeInit), fenced) &&
			waitOrFence(n.scaled(ph.FunctionInit), fenced)
		n.m.cold.Inc()
		n.m.initDur.Observe(initDur.Seconds())
	} else {
		n.m.warm.Inc()
	}
	inv := n.plan(spec, m.Data)
	timeout := time.Duration(spec.TimeoutMs) * time.Millisecond
	fault, delay := faultOf(m)
	// An injected delay starts the handler late, inside its timeout.
	timedOut := timeout > 0 && delay+inv.duration > timeout
	run := inv.duration
	if timedOut {
		run = max(timeout-delay, 0)
	}
	if delay > 0 {
		waitOrFence(n.scaled(min(delay, timeout)), fenced)
	}
	claim, answered := n.idemBefore(m, sb, spec, cold, received, received.Add(n.scaled(timeout)), initDur)
	if answered {
		return
	}
	start := time.Now()
	waitOrFence(n.scaled(run), fenced)
	end := time.Now()
	if ok, lapsed := n.lease.holds(gen, end); !ok {
		n.fence(m, sb, spec, cold, received, start, lapsed, initDur)
		return
	}
	elapsed := end.Sub(start)
	if n.cfg.TimeScale != 1 {
		elapsed = time.Duration(float64(elapsed) * n.cfg.TimeScale)
	}
	// Billed duration includes the init phase (Lambda bills INIT since
	// Aug 2025; the seed's model does too), rounded up to 1 ms.
	rec, r := n.finished(m, sb, spec, cold, received, start, end, elapsed, initDur)
	h := r.Header
	switch {
	case timedOut:
		rec.Outcome = api.OutcomeTimeout
		h.Set(wire.HdrFuncError, "Unhandled")
		r.Data, _ = json.Marshal(map[string]string{"errorType": "Sandbox.Timedout", "errorMessage": fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", reqID, timeout.Seconds())})
		n.m.errors.Inc()
	case inv.fail != "":
		rec.Outcome = api.OutcomeError
		h.Set(wire.HdrFuncError, "Unhandled")
		r.Data, _ = json.Marshal(map[string]string{"errorType": "errorString", "errorMessage": inv.fail})
		n.m.errors.Inc()
	default:
		r.Data = m.Data // the synthetic handler echoes its event
	}
	// The log lines are built only when someone reads them.
	if tail := m.Header.Get(wire.HdrLogTail) == "tail"; tail || n.cfg.LogInvocations {
		logs := reportLines(rec, spec.MemoryMB, timedOut, timeout)
		if tail {
			t := logs
			if len(t) > 4096 {
				t = t[len(t)-4096:]
			}
			h.Set(wire.HdrLogTail, base64.StdEncoding.EncodeToString([]byte(t)))
		}
		if n.cfg.LogInvocations {
			n.log.Info(logs)
		}
	}
	n.m.invocations.Inc()
	n.m.duration.Observe(elapsed.Seconds())
	if claim != nil {
		n.settle(claim, r.Data, h.Get(wire.HdrFuncError) != "")
	}
	// A timed-out sandbox is reset: the next invocation cold-starts.
	n.finish(sb, timedOut || faultResets(fault))
	rec.ReleasedNs = time.Now().UnixNano()
	n.respond(m, r, &rec, timeout)
	n.records.Add(rec)
}

// finished builds the record and the reply headers of an invocation that
// ran on sb (both runtimes): the outcome is ok until the caller says
// otherwise. Billed duration includes the init phase (Lambda bills INIT
// since Aug 2025; the seed's model does too), rounded up to 1 ms.
func (n *Node) finished(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received, start, end time.Time, elapsed, initDur time.Duration) (api.Record, *nats.Msg) {
	billed := int64(math.Ceil(float64(elapsed+initDur) / float64(time.Millisecond)))
	rec := api.Record{
		RequestID: m.Header.Get(wire.HdrRequestID), Account: sb.Key.Account, Function: sb.Key.Function, Version: sb.Key.Version,
		Sandbox: sb.ID, Worker: n.cfg.ID, ReceivedNs: received.UnixNano(), StartNs: start.UnixNano(), EndNs: end.UnixNano(),
		Cold: cold, InitMs: ms(initDur), DurationMs: ms(elapsed), BilledMs: billed, MemoryMB: spec.MemoryMB,
		GBs: float64(billed) / 1000 * float64(spec.MemoryMB) / 1024, Outcome: api.OutcomeOK,
		CodeSha256: spec.CodeSha256, Revision: spec.Revision, Provisioned: sb.Provisioned,
		Attempt: attemptOf(m), Trigger: triggerOf(m),
	}
	if cold {
		rec.GrantedNs, _ = strconv.ParseInt(m.Header.Get(wire.HdrGranted), 10, 64)
	}
	r := nats.NewMsg(m.Reply)
	h := r.Header
	h.Set(wire.HdrStatus, wire.StatusOK)
	h.Set(wire.HdrWorker, n.cfg.ID)
	h.Set(wire.HdrSandbox, sb.ID)
	h.Set(wire.HdrCold, strconv.FormatBool(cold))
	h.Set(wire.HdrInitMs, strconv.FormatFloat(rec.InitMs, 'f', 2, 64))
	h.Set(wire.HdrDurMs, strconv.FormatFloat(rec.DurationMs, 'f', 2, 64))
	h.Set(wire.HdrBilledMs, strconv.FormatInt(billed, 10))
	h.Set(wire.HdrProvisioned, strconv.FormatBool(sb.Provisioned))
	return rec, r
}

// reportLines renders Lambda's START/END/REPORT lines.
func reportLines(r api.Record, memMB int, timedOut bool, timeout time.Duration) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "START RequestId: %s Version: %s\n", r.RequestID, r.Version)
	if timedOut {
		fmt.Fprintf(&b, "%s %s Task timed out after %.2f seconds\n", time.Unix(0, r.EndNs).UTC().Format(time.RFC3339Nano), r.RequestID, timeout.Seconds())
	}
	fmt.Fprintf(&b, "END RequestId: %s\n", r.RequestID)
	fmt.Fprintf(&b, "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\tMax Memory Used: %d MB", r.RequestID, r.DurationMs, r.BilledMs, memMB, memMB)
	if r.Cold {
		fmt.Fprintf(&b, "\tInit Duration: %.2f ms", r.InitMs)
	}
	b.WriteString("\t\n")
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fence ends an invocation whose worker lost its lease under it: the
// sandbox is reset, the result never delivered, the caller told with a
// typed 5xx, and the record ends at the lease's expiry, when the platform
// stopped counting it.
func (n *Node) fence(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received, start, lapsed time.Time, initDur time.Duration) {
	n.m.fenced.Inc()
	n.finish(sb, true)
	if start.After(lapsed) {
		start = lapsed // the cold start itself was cut short
	}
	rec := api.Record{
		RequestID: m.Header.Get(wire.HdrRequestID), Account: sb.Key.Account, Function: sb.Key.Function, Version: sb.Key.Version,
		Sandbox: sb.ID, Worker: n.cfg.ID, ReceivedNs: received.UnixNano(), StartNs: start.UnixNano(), EndNs: lapsed.UnixNano(),
		ReleasedNs: lapsed.UnixNano(), Cold: cold, InitMs: ms(initDur), DurationMs: ms(lapsed.Sub(start)), MemoryMB: spec.MemoryMB,
		Outcome: api.OutcomeFenced,
		Attempt: attemptOf(m), Trigger: triggerOf(m),
	}
	if cold {
		rec.GrantedNs, _ = strconv.ParseInt(m.Header.Get(wire.HdrGranted), 10, 64)
	}
	n.replyStatus(m, wire.StatusError, "ServiceException", "the invocation was fenced: worker "+n.cfg.ID+" lost its lease from placement while it ran, and its result is discarded")
	n.records.Add(rec)
}

// inScope reports whether an idle sandbox of k may be reclaimed for q.
func inScope(k pool.Key, q wire.IdleQuery, reserved map[string]bool) bool {
	return quota.InScope(quota.Idle{Account: k.Account, Function: k.Function, Reserved: reserved[k.Function]}, q.Account, q.Function, q.Scope)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// attemptOf and triggerOf read what the gateway said about an
// invocation's attempt (asynchronous retries) for its record.
func attemptOf(m *nats.Msg) int {
	if n, err := strconv.Atoi(m.Header.Get(wire.HdrAttempt)); err == nil && n > 0 {
		return n
	}
	return 1
}

func triggerOf(m *nats.Msg) string {
	switch t := m.Header.Get(wire.HdrTrigger); t {
	case api.TriggerEvent, api.TriggerRetry, api.TriggerRedrive, api.TriggerDuplicate:
		return t
	}
	return api.TriggerSync
}
