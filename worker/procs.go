package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/process"
)

// Real functions: a sandbox of a function with code is a process speaking
// the Runtime API (worker/process). The pool, leases, grants, fencing and
// records are the synthetic runtime's; only what runs inside differs.

// CodeSource unpacks code bundles by digest into read-only directories
// (codestore.Cache); release is called when the sandbox using it closes.
type CodeSource interface {
	Dir(ctx context.Context, digest string) (dir string, release func(), err error)
}

// LogLine is one line of a function's log stream: what its process wrote,
// or the platform's START/END/REPORT lines.
type LogLine struct {
	Time                                                         time.Time
	Account, Function, Version, RequestID, Sandbox, Stream, Line string
}

// procState is a process sandbox's runtime state.
type procState struct {
	sb      *process.Sandbox
	release func()
	reqID   string // the invocation in progress, for the log lines
}

// codeFetchTimeout bounds fetching and unpacking a bundle on a cold start.
const codeFetchTimeout = 30 * time.Second

func (n *Node) scratchRoot() string {
	if n.cfg.ScratchDir != "" {
		return n.cfg.ScratchDir
	}
	return filepath.Join(os.TempDir(), "coldstart-scratch-"+n.cfg.ID)
}

// startProcess creates the process sandbox of sb and waits for its init.
func (n *Node) startProcess(sb *pool.Sandbox, spec *wire.Spec, initType string) (*procState, process.Phases, error) {
	if n.cfg.Code == nil {
		return nil, process.Phases{}, &process.Error{Type: "Runtime.InvalidEntrypoint", Message: "this worker has no code store: it runs synthetic functions only"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), codeFetchTimeout)
	dir, release, err := n.cfg.Code.Dir(ctx, spec.CodeSha256)
	cancel()
	if err != nil {
		return nil, process.Phases{}, fmt.Errorf("code bundle %s: %w", spec.CodeSha256, err)
	}
	st := &procState{release: release}
	root := n.scratchRoot()
	_ = os.MkdirAll(root, 0o755)
	_ = os.Chmod(root, 0o755)
	cfg := process.Config{
		CodeDir: dir, ScratchDir: filepath.Join(root, sb.ID), Runtime: spec.Runtime, Handler: spec.Handler, Env: spec.Environment,
		FunctionName: sb.Key.Function, Version: sb.Key.Version, Region: "us-east-1", AccountID: sb.Key.Account, MemoryMB: spec.MemoryMB,
		LogGroup: "/aws/lambda/" + sb.Key.Function, LogStream: time.Now().UTC().Format("2006/01/02") + "/[" + sb.Key.Version + "]" + sb.ID,
		InitType: initType, BootDelay: n.cfg.BootDelay,
		Log: func(line []byte) { n.logLine(sb, st.reqID, "stdout", string(line)) },
	}
	ps, ph, err := process.Start(context.Background(), cfg)
	if err != nil {
		release()
		return nil, ph, err
	}
	st.sb = ps
	n.mu.Lock()
	n.procs[sb.ID] = st
	n.mu.Unlock()
	return st, ph, nil
}

func (n *Node) logLine(sb *pool.Sandbox, reqID, stream, line string) {
	if n.cfg.Logs == nil {
		return
	}
	n.cfg.Logs(LogLine{Time: time.Now(), Account: sb.Key.Account, Function: sb.Key.Function, Version: sb.Key.Version, RequestID: reqID, Sandbox: sb.ID, Stream: stream, Line: line})
}

// closeProc ends a process sandbox (its sandbox left the pool, or was
// reset).
func (n *Node) closeProc(id, reason string) {
	n.mu.Lock()
	st := n.procs[id]
	delete(n.procs, id)
	n.mu.Unlock()
	if st != nil {
		go func() {
			st.sb.Close(reason)
			st.release()
		}()
	}
}

// sweepProcs closes the processes of sandboxes no longer in the pool
// (expired, retired, dropped, voided): every path that removes a sandbox
// wakes the expire loop, which calls this.
func (n *Node) sweepProcs() {
	var gone []string
	n.mu.Lock()
	for id := range n.procs {
		if n.pool.Get(id) == nil {
			gone = append(gone, id)
		}
	}
	n.mu.Unlock()
	for _, id := range gone {
		n.closeProc(id, "SPINDOWN")
	}
}

// initError is a failed cold start as the caller sees it: Lambda answers
// an init failure of a synchronous invocation as a function error.
func initError(err error) (etype, msg string) {
	var pe *process.Error
	if errors.As(err, &pe) {
		return pe.Type, pe.Message
	}
	return "Runtime.Unknown", err.Error()
}

// runProcess is run for a function with code.
func (n *Node) runProcess(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received time.Time, gen uint64, fenced <-chan struct{}) {
	reqID := m.Header.Get(wire.HdrRequestID)
	var initDur time.Duration
	n.mu.Lock()
	st := n.procs[sb.ID]
	n.mu.Unlock()
	if cold || st == nil {
		var ph process.Phases
		var err error
		st, ph, err = n.startProcess(sb, spec, "on-demand")
		initDur = ph.SandboxCreate + ph.RuntimeInit
		n.m.cold.Inc()
		n.m.initDur.Observe(initDur.Seconds())
		if err != nil {
			n.finish(sb, true)
			var pe *process.Error
			if !errors.As(err, &pe) {
				// The platform failed (the code bundle could not be fetched
				// or failed verification), not the function: a typed 5xx the
				// caller may retry; the worker keeps serving.
				n.log.Warn("cold start failed", "sandbox", sb.ID, "err", err)
				n.replyStatus(m, wire.StatusError, "ServiceException", "the sandbox could not be created: "+err.Error())
				return
			}
			n.replyFunctionError(m, sb, spec, cold, received, initDur, pe.Type, pe.Message)
			return
		}
	} else {
		n.m.warm.Inc()
	}
	timeout := time.Duration(spec.TimeoutMs) * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		select {
		case <-fenced:
			cancel()
		case <-done:
		}
	}()
	arn := "arn:aws:lambda:us-east-1:" + sb.Key.Account + ":function:" + sb.Key.Function
	if sb.Key.Version != "$LATEST" {
		arn += ":" + sb.Key.Version
	}
	fault, delay := faultOf(m)
	deadline := time.Now().Add(timeout)
	if delay > 0 {
		// An injected delay starts the handler late, inside its timeout.
		select {
		case <-time.After(min(delay, timeout)):
		case <-fenced:
		}
	}
	// idemBefore may answer and give the sandbox back: nothing of it (st
	// included) is touched after that.
	claim, answered := n.idemBefore(m, sb, spec, cold, received, deadline, initDur)
	if answered {
		close(done)
		cancel()
		return
	}
	st.reqID = reqID
	// START goes to the stream before the function's own lines.
	n.logLine(sb, reqID, "platform", "START RequestId: "+reqID+" Version: "+sb.Key.Version)
	start := time.Now()
	res, err := st.sb.Invoke(ctx, process.Invocation{RequestID: reqID, Payload: m.Data, Deadline: deadline, ClientContext: m.Header.Get(wire.HdrClientContext), InvokedARN: arn})
	end := time.Now()
	close(done)
	cancel()
	if ok, lapsed := n.lease.holds(gen, end); !ok {
		n.closeProc(sb.ID, "FAILURE")
		n.fence(m, sb, spec, cold, received, start, lapsed, initDur)
		return
	}
	if err != nil {
		// The sandbox died between invocations (or refused a second one):
		// reset it; the caller gets Lambda's exit error.
		res = process.Result{ErrorType: "Runtime.ExitError", Reset: true, Payload: []byte(`{"errorType":"Runtime.ExitError","errorMessage":"RequestId: ` + reqID + ` Error: ` + err.Error() + `"}`)}
	}
	elapsed := res.Duration
	if elapsed <= 0 {
		elapsed = end.Sub(start)
	}
	rec, r := n.finished(m, sb, spec, cold, received, start, end, elapsed, initDur)
	rec.MaxMemoryMB = res.MaxMemoryMB
	h := r.Header
	timedOut := res.ErrorType == "Sandbox.Timedout"
	switch {
	case timedOut:
		rec.Outcome = api.OutcomeTimeout
		h.Set(wire.HdrFuncError, "Unhandled")
		n.m.errors.Inc()
	case res.ErrorType != "":
		rec.Outcome = api.OutcomeError
		h.Set(wire.HdrFuncError, "Unhandled")
		n.m.errors.Inc()
	}
	r.Data = res.Payload
	report := reportLinesMem(rec, spec.MemoryMB, res.MaxMemoryMB, timedOut, timeout)
	n.publishInvocationLogs(sb, reqID, rec, report)
	if m.Header.Get(wire.HdrLogTail) == "tail" {
		var b bytes.Buffer
		fmt.Fprintf(&b, "START RequestId: %s Version: %s\n", reqID, sb.Key.Version)
		b.Write(res.Logs)
		b.WriteString(report[bytes.IndexByte([]byte(report), '\n')+1:])
		t := b.Bytes()
		if len(t) > 4096 {
			t = t[len(t)-4096:]
		}
		h.Set(wire.HdrLogTail, base64.StdEncoding.EncodeToString(t))
	}
	n.m.invocations.Inc()
	n.m.duration.Observe(elapsed.Seconds())
	st.reqID = ""
	if claim != nil {
		n.settle(claim, res.Payload, res.ErrorType != "")
	}
	reset := res.Reset || faultResets(fault)
	if reset {
		n.closeProc(sb.ID, "FAILURE")
	}
	n.finish(sb, reset)
	rec.ReleasedNs = time.Now().UnixNano()
	n.respond(m, r, &rec, timeout)
	n.records.Add(rec)
}

// publishInvocationLogs sends the platform's lines of one invocation to
// the function's log stream (the process's own lines went as they came).
func (n *Node) publishInvocationLogs(sb *pool.Sandbox, reqID string, rec api.Record, report string) {
	if n.cfg.Logs == nil {
		return
	}
	for _, line := range bytes.Split([]byte(report), []byte{'\n'}) {
		if len(line) > 0 && !bytes.HasPrefix(line, []byte("START ")) {
			n.logLine(sb, reqID, "platform", string(line))
		}
	}
}

// reportLinesMem is reportLines with the measured Max Memory Used.
func reportLinesMem(r api.Record, memMB, maxUsed int, timedOut bool, timeout time.Duration) string {
	s := reportLines(r, memMB, timedOut, timeout)
	if maxUsed > 0 {
		s = string(bytes.Replace([]byte(s), []byte("Max Memory Used: "+strconv.Itoa(memMB)+" MB"), []byte("Max Memory Used: "+strconv.Itoa(maxUsed)+" MB"), 1))
	}
	return s
}

// replyFunctionError answers a cold start whose init failed: a function
// error (200, X-Amz-Function-Error) with Lambda's body, and its record.
func (n *Node) replyFunctionError(m *nats.Msg, sb *pool.Sandbox, spec *wire.Spec, cold bool, received time.Time, initDur time.Duration, etype, msg string) {
	reqID := m.Header.Get(wire.HdrRequestID)
	now := time.Now()
	rec := api.Record{RequestID: reqID, Account: sb.Key.Account, Function: sb.Key.Function, Version: sb.Key.Version, Sandbox: sb.ID, Worker: n.cfg.ID,
		ReceivedNs: received.UnixNano(), StartNs: now.UnixNano(), EndNs: now.UnixNano(), ReleasedNs: now.UnixNano(), Cold: cold, InitMs: ms(initDur),
		MemoryMB: spec.MemoryMB, Outcome: api.OutcomeError, CodeSha256: spec.CodeSha256, Revision: spec.Revision,
		Attempt: attemptOf(m), Trigger: triggerOf(m)}
	if cold {
		rec.GrantedNs, _ = strconv.ParseInt(m.Header.Get(wire.HdrGranted), 10, 64)
	}
	n.m.errors.Inc()
	r := nats.NewMsg(m.Reply)
	r.Header.Set(wire.HdrStatus, wire.StatusOK)
	r.Header.Set(wire.HdrWorker, n.cfg.ID)
	r.Header.Set(wire.HdrSandbox, sb.ID)
	r.Header.Set(wire.HdrCold, strconv.FormatBool(cold))
	r.Header.Set(wire.HdrInitMs, strconv.FormatFloat(rec.InitMs, 'f', 2, 64))
	r.Header.Set(wire.HdrFuncError, "Unhandled")
	body, _ := jsonMarshal(map[string]string{"errorType": etype, "errorMessage": msg})
	r.Data = body
	n.logLine(sb, reqID, "platform", "INIT_REPORT Init Duration: "+strconv.FormatFloat(rec.InitMs, 'f', 2, 64)+" ms Phase: init Status: error Error Type: "+etype)
	_ = m.RespondMsg(r)
	n.records.Add(rec)
}

// handlePrewarm creates a provisioned sandbox placement granted and runs
// its init ahead of any invocation (Lambda's provisioned concurrency). It
// answers ok once the sandbox is idle and ready, error with the init
// failure, busy when the worker holds no lease.
func (n *Node) handlePrewarm(m *nats.Msg) {
	received := time.Now()
	k := keyOf(m.Header)
	id := m.Header.Get(wire.HdrSandbox)
	spec, err := n.specs.get(m.Header.Get(wire.HdrSpec))
	if err != nil || id == "" {
		n.replyStatus(m, wire.StatusError, "InvalidRequestContentException", "prewarm without a valid spec or sandbox id")
		return
	}
	ok, gen := n.mayStart(received)
	if !ok {
		n.replyStatus(m, wire.StatusBusy, "ServiceException", "worker "+n.cfg.ID+" holds no valid lease from placement")
		return
	}
	if err := n.checkGrant(m.Header, id, k); err != nil {
		var stale *staleGrantError
		if errors.As(err, &stale) {
			n.replyStatus(m, wire.StatusBusy, "ServiceException", err.Error())
			return
		}
		n.replyStatus(m, wire.StatusError, "AccessDeniedException", err.Error())
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.replyStatus(m, wire.StatusBusy, "ServiceException", "worker "+n.cfg.ID+" is stopping")
		return
	}
	if call := n.prewarms[id]; call != nil {
		// Asked again while its init runs (a new leader, or a commit
		// that failed): the answer is the first one's outcome.
		n.mu.Unlock()
		go func() {
			<-call.done
			n.replyPrewarm(m, call.err)
		}()
		return
	}
	if old := n.pool.Get(id); old != nil {
		n.mu.Unlock()
		if old.Key != k || !old.Provisioned {
			n.replyStatus(m, wire.StatusError, "ServiceException", "sandbox "+id+" already exists for another use")
			return
		}
		// Its init finished: the leader that asked first could not
		// commit the outcome, and whoever leads now asks to learn it.
		n.replyStatus(m, wire.StatusOK, "", "")
		return
	}
	sb := n.pool.Add(id, k, n.now(), pool.Forever)
	sb.Value = spec
	sb.Provisioned = true
	n.inflight++
	call := &prewarmCall{done: make(chan struct{})}
	n.prewarms[id] = call
	n.mu.Unlock()
	go func() {
		var initErr error
		defer func() {
			n.mu.Lock()
			delete(n.prewarms, id)
			n.mu.Unlock()
			call.err = initErr
			close(call.done)
		}()
		if spec.Synthetic {
			n.mu.Lock()
			ph := spec.Profile.DrawCold(n.rnd)
			n.mu.Unlock()
			time.Sleep(n.scaled(ph.Total())) // the modelled init itself, not a synchronisation
		} else {
			_, _, initErr = n.startProcess(sb, spec, "provisioned-concurrency")
		}
		if held, _ := n.lease.holds(gen, time.Now()); !held && initErr == nil {
			initErr = errors.New("the worker lost its lease during init")
		}
		if initErr != nil {
			n.closeProc(id, "FAILURE")
			n.finish(sb, true)
		} else {
			n.finish(sb, false)
		}
		n.replyPrewarm(m, initErr)
	}()
}

// prewarmCall is one provisioned init in progress: a repeated request for
// the same sandbox waits for it instead of starting a second one.
type prewarmCall struct {
	done chan struct{}
	err  error // set before done is closed
}

func (n *Node) replyPrewarm(m *nats.Msg, initErr error) {
	if initErr != nil {
		etype, msg := initError(initErr)
		n.replyStatus(m, wire.StatusError, etype, msg)
		return
	}
	n.replyStatus(m, wire.StatusOK, "", "")
}

// handleDeploy drops sandboxes of a version whose code or configuration
// changed (or that was deleted): idle ones now, busy ones when their
// invocation ends, so that no invocation after a deploy runs old code in
// an old sandbox, and their capacity goes back through placement.
func (n *Node) handleDeploy(ev wire.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var drop []*pool.Sandbox
	n.pool.Each(func(sb *pool.Sandbox) {
		if sb.Key.Account != ev.Account || sb.Key.Function != ev.Function || sb.Key.Version != ev.Version {
			return
		}
		if ev.Revision != 0 && specOf(sb).Revision >= ev.Revision {
			return
		}
		if sb.Busy {
			n.dropping[sb.ID] = true
		} else {
			drop = append(drop, sb)
		}
	})
	for _, sb := range drop {
		n.pool.Remove(sb)
		n.pending = append(n.pending, sb.ID)
		n.updateWarmSub(sb.Key)
	}
	n.kick()
}
