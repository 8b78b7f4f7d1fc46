package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/placement"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// MaxSyncPayload is Lambda's 6 MB synchronous request limit.
const MaxSyncPayload = 6 * 1024 * 1024

// fnVersion is one version of a function: what an invocation asks for, and
// what a warm sandbox serves.
type fnVersion struct{ Account, Function, Version string }

// warmSubject is where the idle sandboxes of v are found.
func (v fnVersion) warmSubject() string { return wire.WarmSubject(v.Account, v.Function, v.Version) }

func (g *Gateway) handleInvoke(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := w.Header().Get(api.HeaderRequestID)
	if reqID == "" {
		reqID = newRequestID()
		w.Header().Set(api.HeaderRequestID, reqID)
	}
	ref, err := ParseFunctionName(r.PathValue("name"), r.URL.Query().Get("Qualifier"))
	if err != nil {
		writeError(w, errInvalidParam(err.Error()))
		return
	}
	acct := g.account(r)
	if ref.Account != "" && ref.Account != acct {
		// Another account's function answers exactly like a missing one.
		writeError(w, errNotFound("Function not found: arn:aws:lambda:us-east-1:"+ref.Account+":function:"+ref.Name))
		return
	}
	switch r.Header.Get(api.HeaderInvocationType) {
	case "", "RequestResponse", "DryRun", "Event":
	default:
		writeError(w, errInvalidParam("1 validation error detected: Value '"+clip(r.Header.Get(api.HeaderInvocationType))+"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"))
		return
	}
	e := g.lookup(r.Context(), acct, ref.Name)
	if e == nil {
		writeError(w, errNotFound("Function not found: "+arnOf(acct, ref.Name)))
		return
	}
	version, spec, rev, timeoutMs, lerr := e.resolve(ref.Qualifier)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	if r.Header.Get(api.HeaderInvocationType) == "Event" {
		// The function, version or alias exist (checked above); the event
		// is stored, and runs later through the dispatchers.
		const tooLargeAsync = "Request must be smaller than 1048576 bytes for the InvokeAsync operation"
		if r.ContentLength > MaxAsyncPayload {
			writeError(w, errTooLarge(tooLargeAsync))
			return
		}
		payload, lerr := g.readBody(w, r, MaxAsyncPayload, tooLargeAsync)
		if lerr != nil {
			writeError(w, lerr)
			return
		}
		g.enqueue(w, r, e, acct, ref.Qualifier, payload)
		return
	}
	key := fnVersion{Account: acct, Function: ref.Name, Version: version}
	if e.fn.Reserved != nil && *e.fn.Reserved == 0 {
		// Reserved concurrency 0 stops every invocation at once, warm
		// sandboxes included (placement also drops them).
		g.throttle(w, reqID, key, errThrottle(string(quota.ReasonReservedConcurrency)))
		return
	}
	if r.Header.Get(api.HeaderInvocationType) == "DryRun" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !g.rate.allow(acct, g.cache.limit(acct), int(g.gateways.Load())) {
		g.throttle(w, reqID, key, errThrottle(string(quota.ReasonFunctionRate)))
		return
	}
	const tooLarge = "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
	if r.ContentLength > MaxSyncPayload {
		writeError(w, errTooLarge(tooLarge))
		return
	}
	payload, lerr := g.readBody(w, r, MaxSyncPayload, tooLarge)
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	if len(payload) == 0 {
		// Lambda hands an empty payload to the function as {}.
		payload = []byte("{}")
	}
	msg := &nats.Msg{Data: payload, Header: nats.Header{}}
	h := msg.Header
	h.Set(wire.HdrRequestID, reqID)
	h.Set(wire.HdrAccount, acct)
	h.Set(wire.HdrFunction, ref.Name)
	h.Set(wire.HdrVersion, version)
	h.Set(wire.HdrRev, rev)
	if cc := r.Header.Get(api.HeaderClientContext); cc != "" {
		raw, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || len(cc) > 3583 || !json.Valid(raw) {
			writeError(w, errInvalidContent("Client context must be a valid Base64-encoded JSON object"))
			return
		}
		h.Set(wire.HdrClientContext, string(raw))
	}
	if r.Header.Get(api.HeaderLogType) == "Tail" {
		h.Set(wire.HdrLogTail, "tail")
	}
	setIdempotency(e, msg, r.Header)
	if lerr := g.applyFault(r.Context(), e, msg, key, spec, timeoutMs, 1, api.TriggerSync); lerr != nil {
		writeError(w, lerr)
		return
	}
	// The worker enforces the function timeout; the gateway waits a little
	// longer (cold-start phases included) so the worker's Sandbox.Timedout
	// answer arrives first. A worker that dies mid-invocation costs the
	// caller this wait: NATS does not tell a requester its responder died.
	wait := time.Duration(timeoutMs)*time.Millisecond + invokeMargin
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()

	reply, lerr := g.route(ctx, msg, key, spec)
	if lerr != nil {
		if lerr.Status == http.StatusTooManyRequests {
			g.throttle(w, reqID, key, lerr)
			return
		}
		writeError(w, lerr)
		return
	}
	if e.fn.Provisioned != nil && e.provisioned(version) {
		if reply.Header.Get(wire.HdrProvisioned) == "true" {
			g.m.pcInvocations.Inc()
		} else {
			g.m.pcSpillover.Inc()
		}
	}
	g.writeInvokeReply(w, reply, version)
	g.m.latency.Observe(time.Since(start).Seconds())
}

// throttle answers a 429 and publishes its record: every throttle the
// gateway answers can be checked against the limits at that instant.
func (g *Gateway) throttle(w http.ResponseWriter, reqID string, k fnVersion, lerr *lambdaError) {
	g.m.throttles.Inc()
	g.recs.Add(api.Record{RequestID: reqID, Account: k.Account, Function: k.Function, Version: k.Version, ReceivedNs: time.Now().UnixNano(), Outcome: api.OutcomeThrottled, Reason: lerr.Reason, Gateway: g.cfg.ID})
	writeError(w, lerr)
}

// route sends the invocation to an idle warm sandbox if any worker has one,
// else asks placement for a new sandbox and cold-starts it.
func (g *Gateway) route(ctx context.Context, msg *nats.Msg, k fnVersion, spec string) (*nats.Msg, *lambdaError) {
	msg.Subject = k.warmSubject()
	for i := 0; i < g.cfg.WarmAttempts; i++ {
		reply, err := g.nc.RequestMsgWithContext(ctx, msg)
		if errors.Is(err, nats.ErrNoResponders) {
			break // nobody holds an idle sandbox of this version
		}
		if err != nil {
			return nil, errService("invocation failed in transit: " + err.Error())
		}
		switch reply.Header.Get(wire.HdrStatus) {
		case wire.StatusBusy:
			g.m.busy.Inc()
			continue
		case wire.StatusOK:
			g.m.warm.Inc()
			return reply, nil
		default:
			return nil, workerError(reply)
		}
	}
	reply, lerr, warm := g.cold(ctx, msg, k, spec, false)
	for round := 0; warm && round < warmRounds; round++ {
		// Placement found an idle sandbox of this very function and version
		// at the limit: it never reclaims one for a new one of itself, so
		// the request goes back to the warm path.
		g.m.busy.Inc()
		msg.Subject = k.warmSubject()
		r, err := g.nc.RequestMsgWithContext(ctx, msg)
		if err == nil && r.Header.Get(wire.HdrStatus) == wire.StatusOK {
			g.m.warm.Inc()
			return r, nil
		}
		if err == nil && r.Header.Get(wire.HdrStatus) != wire.StatusBusy {
			return nil, workerError(r)
		}
		reply, lerr, warm = g.cold(ctx, msg, k, spec, false)
	}
	return reply, lerr
}

// warmRounds bounds how often a request is sent back from placement to the
// warm path before it is throttled.
const warmRounds = 3

// cold asks placement for a new sandbox and cold-starts the invocation in
// it. warm reports that placement sent the request back to the warm path.
func (g *Gateway) cold(ctx context.Context, msg *nats.Msg, k fnVersion, spec string, retried bool) (reply *nats.Msg, lerr *lambdaError, warm bool) {
	id := "sb-" + newRequestID()
	resp, err := g.askPlacementOp(ctx, wire.OpCreateSandbox, wire.Request{Op: wire.OpCreateSandbox, Sandbox: &wire.CreateSandbox{ID: id, Account: k.Account, Function: k.Function, Version: k.Version}}, placementBudget)
	if err != nil {
		if errors.Is(err, wire.ErrUnavailable) {
			// The request may still be granted after we gave up: cancel it,
			// or its sandbox would hold capacity nobody uses.
			go g.cancelGrant(id, msg.Header.Get(wire.HdrRequestID))
			g.m.placementFail.Inc()
			return nil, errService("Cold start refused: the placement service is unavailable (no Raft quorum). Warm sandboxes keep serving. " + err.Error()), false
		}
		return nil, placementError(err), false
	}
	gr := resp.Grant
	switch {
	case gr == nil:
		return nil, errService("placement returned no grant"), false
	case gr.Warm:
		reason := gr.Reason
		if reason == quota.ReasonNone {
			reason = quota.ReasonAccountConcurrency
		}
		return nil, errThrottle(string(reason)), true
	case gr.Reason != quota.ReasonNone:
		return nil, errThrottle(string(gr.Reason)), false
	case gr.Err != "":
		if gr.Err == placement.ErrNotFound.Error() {
			g.cache.drop(k.Account, k.Function, 0)
			return nil, errNotFound("Function not found: arn:aws:lambda:us-east-1:" + k.Account + ":function:" + k.Function), false
		}
		return nil, errService("no worker can host a new sandbox: " + gr.Err), false
	case gr.Sandbox == nil:
		return nil, errService("placement returned an empty grant"), false
	}
	if want := strconv.FormatUint(gr.Sandbox.Revision, 10); gr.Sandbox.Revision != 0 && want != msg.Header.Get(wire.HdrRev) {
		// Placement granted the sandbox for a newer deploy than this
		// gateway's cache knows: the sandbox must run that code, never the
		// old one.
		g.refreshFresh(0)
		e := g.cache.get(k.Account, k.Function)
		var fresh string
		if e != nil {
			if _, sp, rev, _, lerr := e.resolve(k.Version); lerr == nil && rev == want {
				fresh = sp
			}
		}
		if fresh == "" {
			go g.cancelGrant(gr.Sandbox.ID, msg.Header.Get(wire.HdrRequestID))
			return nil, errService("the function was redeployed while this invocation was routed; retry"), false
		}
		spec = fresh
		msg.Header.Set(wire.HdrRev, want)
	}
	msg.Subject = wire.InvokeSubject(gr.Sandbox.Worker)
	msg.Header.Set(wire.HdrSandbox, gr.Sandbox.ID)
	msg.Header.Set(wire.HdrSpec, spec)
	msg.Header.Set(wire.HdrGranted, strconv.FormatInt(gr.Sandbox.CreatedNs, 10))
	msg.Header.Set(wire.HdrWorkerInc, strconv.FormatUint(gr.Sandbox.WorkerInc, 10))
	msg.Header.Set(wire.HdrGrantToken, gr.Token)
	reply, err = g.nc.RequestMsgWithContext(ctx, msg)
	if err == nil && reply.Header.Get(wire.HdrStatus) == wire.StatusBusy {
		// The worker holds no lease (it is starting, or lost contact with
		// placement): it started nothing. Same as an unreachable worker.
		err = nats.ErrNoResponders
	}
	if errors.Is(err, nats.ErrNoResponders) {
		// The worker's connection is gone, or it holds no lease. Its
		// capacity comes back when its lease expires (placement never
		// trusts a single observation); the invocation is placed once more,
		// elsewhere if there is room.
		go g.cancelGrant(gr.Sandbox.ID, msg.Header.Get(wire.HdrRequestID))
		g.askPlacementOp(ctx, wire.OpSuspect, wire.Request{Op: wire.OpSuspect, Worker: gr.Sandbox.Worker}, placementBudget)
		if !retried {
			return g.cold(ctx, msg, k, spec, true)
		}
		return nil, errService("the worker chosen for the sandbox (" + gr.Sandbox.Worker + ") is not reachable"), false
	}
	if err != nil {
		return nil, errService("invocation failed in transit: " + err.Error()), false
	}
	if reply.Header.Get(wire.HdrStatus) != wire.StatusOK {
		if reply.Header.Get(wire.HdrErrorType) == "AccessDeniedException" {
			// The worker refused the grant and created nothing: give it
			// back rather than leave it counted until a reconcile.
			go g.cancelGrant(gr.Sandbox.ID, msg.Header.Get(wire.HdrRequestID))
		}
		return nil, workerError(reply), false
	}
	g.m.cold.Inc()
	return reply, nil, false
}

// placementBudget bounds the cold path's wait for placement: a leader
// change is absorbed by retrying, a lost quorum still fails within 1 s.
// Control-plane writes get a little longer (controlBudget); a cancel,
// which nobody waits for, much longer (cancelBudget).
const (
	placementBudget = 600 * time.Millisecond
	controlBudget   = 900 * time.Millisecond // writes without quorum fail within 1 s, like cold starts
	cancelBudget    = 5 * time.Second
	attemptBudget   = 300 * time.Millisecond
)

// askPlacement retries while placement is between leaders. The sandbox id
// in the request makes a retry that follows a lost answer idempotent.
func (g *Gateway) askPlacement(ctx context.Context, req wire.Request, budget time.Duration) (wire.Response, error) {
	return retryPlacement(ctx, budget, budget, func(ctx context.Context) (wire.Response, error) { return g.pl.Do(ctx, req) })
}

// askPlacementOp is askPlacement on this gateway's own subject.
func (g *Gateway) askPlacementOp(ctx context.Context, op string, req wire.Request, budget time.Duration) (wire.Response, error) {
	return retryPlacement(ctx, budget, attemptBudget, func(ctx context.Context) (wire.Response, error) { return g.pl.GatewayOp(ctx, g.cfg.ID, op, req) })
}

// Each attempt gets at most attempt. The gateway's own requests (a grant
// by its id, a cancel by its ids) are idempotent, so they get a short one:
// a leader that stopped answering (paused, cut off) must not hold the
// whole budget while a new one already serves. Control-plane writes are
// not (a create repeated after it succeeded answers a conflict), so they
// wait for their one answer.
func retryPlacement(ctx context.Context, budget, attempt time.Duration, do func(context.Context) (wire.Response, error)) (wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	for wait := 20 * time.Millisecond; ; wait *= 2 {
		actx, acancel := context.WithTimeout(ctx, attempt)
		resp, err := do(actx)
		acancel()
		if err == nil || !errors.Is(err, wire.ErrUnavailable) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(wait):
		}
	}
}

// cancelGrant releases (or, if not granted yet, cancels) a sandbox id the
// gateway asked for but will not use.
func (g *Gateway) cancelGrant(id, reqID string) {
	sent := time.Now().UnixNano()
	resp, err := g.askPlacementOp(context.Background(), wire.OpCancel, wire.Request{Op: wire.OpCancel, Release: []string{id}}, cancelBudget)
	if err != nil {
		return
	}
	answered := time.Now().UnixNano()
	// A grant the cancel released held a slot of its account that no
	// invocation used, from the grant to the cancel: its record lets the
	// checker (and a user reading the records) count it, so a 429 answered
	// meanwhile is seen at the limit it really was.
	for _, sb := range resp.Cancelled {
		end := max(sent, sb.CreatedNs)
		g.recs.Add(api.Record{RequestID: reqID, Account: sb.Account, Function: sb.Function, Version: sb.Version,
			Sandbox: sb.ID, Worker: sb.Worker, ReceivedNs: sb.CreatedNs, GrantedNs: sb.CreatedNs, StartNs: end, EndNs: end,
			ReleasedNs: max(answered, end), MemoryMB: sb.MemoryMB, Revision: sb.Revision, Outcome: api.OutcomeAbandoned, Gateway: g.cfg.ID})
	}
}

func workerError(reply *nats.Msg) *lambdaError {
	t := reply.Header.Get(wire.HdrErrorType)
	if t == "" {
		t = "ServiceException"
	}
	return &lambdaError{statusOf(t), t, reply.Header.Get(wire.HdrError), ""}
}

func (g *Gateway) writeInvokeReply(w http.ResponseWriter, reply *nats.Msg, version string) {
	g.m.invocations.Inc()
	h := w.Header()
	rh := reply.Header
	h.Set(api.HeaderExecutedVersion, version)
	h.Set("Content-Type", "application/json")
	if fe := rh.Get(wire.HdrFuncError); fe != "" {
		h.Set(api.HeaderFunctionError, fe)
		g.m.errors.Inc()
	}
	if lt := rh.Get(wire.HdrLogTail); lt != "" {
		h.Set(api.HeaderLogResult, lt)
	}
	h.Set(api.HeaderCold, rh.Get(wire.HdrCold))
	h.Set(api.HeaderInitMs, rh.Get(wire.HdrInitMs))
	h.Set(api.HeaderDurationMs, rh.Get(wire.HdrDurMs))
	h.Set(api.HeaderBilledMs, rh.Get(wire.HdrBilledMs))
	h.Set(api.HeaderSandbox, rh.Get(wire.HdrSandbox))
	h.Set(api.HeaderWorker, rh.Get(wire.HdrWorker))
	w.WriteHeader(http.StatusOK)
	w.Write(reply.Data)
}

// lookup finds a function in the cache, reading placement once on a miss
// (a function created through another gateway a moment ago).
func (g *Gateway) lookup(ctx context.Context, account, name string) *fnEntry {
	if e := g.cache.get(account, name); e != nil {
		return e
	}
	g.refreshFresh(0)
	return g.cache.get(account, name)
}

// resolve maps an invocation's qualifier to the version that runs: $LATEST,
// a published version, or an alias's version, chosen by its routing
// weights ("a simple probabilistic model", like Lambda's).
func (e *fnEntry) resolve(q string) (version, spec, rev string, timeoutMs int64, lerr *lambdaError) {
	if q == "" || q == LatestVersion {
		return LatestVersion, e.spec, e.rev, e.fn.TimeoutMs, nil
	}
	v := q
	if a := e.fn.Aliases[q]; a != nil {
		v = a.FunctionVersion
		for extra, w := range a.Weights {
			if rand.Float64() < w {
				v = extra
			}
		}
		if v == LatestVersion {
			return LatestVersion, e.spec, e.rev, e.fn.TimeoutMs, nil
		}
	}
	ve, ok := e.versions[v]
	if !ok {
		return "", "", "", 0, errNotFound("Function not found: " + arnOf(e.fn.Account, e.fn.Name) + ":" + q)
	}
	return v, ve.spec, ve.rev, ve.timeoutMs, nil
}

// provisioned reports whether version has a provisioned config (its own or
// through an alias).
func (e *fnEntry) provisioned(version string) bool {
	for q := range e.fn.Provisioned {
		if q == version {
			return true
		}
		if a := e.fn.Aliases[q]; a != nil && a.FunctionVersion == version {
			return true
		}
	}
	return false
}

// setIdempotency names the function's platform idempotency to the worker,
// with the header value its key may come from.
func setIdempotency(e *fnEntry, msg *nats.Msg, h http.Header) {
	ic := e.fn.Idempotency
	if ic == nil {
		return
	}
	msg.Header.Set(wire.HdrIdemConfig, wire.EncodeIdemConfig(ic))
	if name, ok := strings.CutPrefix(ic.Key, "header:"); ok && h != nil {
		msg.Header.Set(wire.HdrIdemKey, h.Get(name))
	}
}
