package gateway

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// The asynchronous invocation config API (Put/Get/Update/Delete/List
// FunctionEventInvokeConfig) and the dead-letter API behind `coldstart
// dlq list|show|redrive`.

type destination struct {
	Destination string `json:"Destination,omitempty"`
}

type destinationConfig struct {
	OnSuccess *destination `json:"OnSuccess,omitempty"`
	OnFailure *destination `json:"OnFailure,omitempty"`
}

type eventInvokeConfigBody struct {
	FunctionArn              string             `json:"FunctionArn,omitempty"`
	LastModified             float64            `json:"LastModified,omitempty"`
	MaximumRetryAttempts     *int               `json:"MaximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int               `json:"MaximumEventAgeInSeconds,omitempty"`
	DestinationConfig        *destinationConfig `json:"DestinationConfig,omitempty"`
}

func eventConfigBody(f wire.Function, c wire.EventInvokeConfig) eventInvokeConfigBody {
	b := eventInvokeConfigBody{FunctionArn: arnOf(f.Account, f.Name) + ":" + c.Qualifier, LastModified: float64(c.ModifiedNs) / 1e9,
		MaximumRetryAttempts: c.MaximumRetryAttempts, MaximumEventAgeInSeconds: c.MaximumEventAgeSeconds}
	if c.MaximumRetryAttempts == nil {
		v := wire.DefaultMaximumRetryAttempts
		b.MaximumRetryAttempts = &v
	}
	if c.MaximumEventAgeSeconds == nil {
		v := wire.DefaultMaximumEventAge
		b.MaximumEventAgeInSeconds = &v
	}
	b.DestinationConfig = &destinationConfig{OnSuccess: &destination{Destination: c.OnSuccess}, OnFailure: &destination{Destination: c.OnFailure}}
	return b
}

func (g *Gateway) putEventConfig(w http.ResponseWriter, r *http.Request, merge bool) {
	var in eventInvokeConfigBody
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	if lerr := g.decodeBody(r, &in); lerr != nil {
		writeError(w, lerr)
		return
	}
	pc := &wire.PutEventConfig{Account: acct, Function: e.fn.Name, Qualifier: eventConfigKey(ref.Qualifier), Merge: merge,
		MaximumRetryAttempts: in.MaximumRetryAttempts, MaximumEventAgeSeconds: in.MaximumEventAgeInSeconds}
	if d := in.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			pc.OnSuccess = &d.OnSuccess.Destination
		}
		if d.OnFailure != nil {
			pc.OnFailure = &d.OnFailure.Destination
		}
	}
	if !merge {
		// Put replaces the whole config: unset destinations are removed.
		empty := ""
		if pc.OnSuccess == nil {
			pc.OnSuccess = &empty
		}
		if pc.OnFailure == nil {
			pc.OnFailure = &empty
		}
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPutEventConfig, EventConfig: pc}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	writeJSON(w, http.StatusOK, eventConfigBody(*resp.Function, *resp.Function.EventConfigs[pc.Qualifier]))
}

func (g *Gateway) handlePutEventConfig(w http.ResponseWriter, r *http.Request) {
	g.putEventConfig(w, r, false)
}
func (g *Gateway) handleUpdateEventConfig(w http.ResponseWriter, r *http.Request) {
	g.putEventConfig(w, r, true)
}

func (g *Gateway) handleGetEventConfig(w http.ResponseWriter, r *http.Request) {
	e, _, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	c := e.fn.EventConfigs[eventConfigKey(ref.Qualifier)]
	if c == nil {
		writeError(w, errNotFound("The function "+arnOf(e.fn.Account, e.fn.Name)+":"+eventConfigKey(ref.Qualifier)+" doesn't have an EventInvokeConfig"))
		return
	}
	writeJSON(w, http.StatusOK, eventConfigBody(e.fn, *c))
}

func (g *Gateway) handleDeleteEventConfig(w http.ResponseWriter, r *http.Request) {
	e, acct, ref, ok := g.functionRef(w, r)
	if !ok {
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpPutEventConfig, EventConfig: &wire.PutEventConfig{Account: acct, Function: e.fn.Name, Qualifier: eventConfigKey(ref.Qualifier), Delete: true}}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) handleListEventConfigs(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	qs := make([]string, 0, len(e.fn.EventConfigs))
	for q := range e.fn.EventConfigs {
		qs = append(qs, q)
	}
	sort.Strings(qs)
	from, to, next, lerr := paging(r, len(qs))
	if lerr != nil {
		writeError(w, lerr)
		return
	}
	out := []eventInvokeConfigBody{}
	for _, q := range qs[from:to] {
		out = append(out, eventConfigBody(e.fn, *e.fn.EventConfigs[q]))
	}
	body := map[string]any{"FunctionEventInvokeConfigs": out}
	if next != "" {
		body["NextMarker"] = next
	}
	writeJSON(w, http.StatusOK, body)
}

// deadLetter is one event in the dead-letter stream.
type deadLetter struct {
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
	at      time.Time
}

// deadLetters lists an account's dead-lettered events (one function's
// when function is set), oldest first.
func (g *Gateway) deadLetters(ctx context.Context, account, function string) ([]deadLetter, error) {
	info, err := g.async.dlq.Info(ctx)
	if err != nil {
		return nil, err
	}
	prefix := dlqPrefix + account + "."
	var out []deadLetter
	const maxScan = 20000
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq-info.State.FirstSeq < maxScan; seq++ {
		m, err := g.async.dlq.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted (redriven)
		}
		if !strings.HasPrefix(m.Subject, prefix) || (function != "" && m.Subject != prefix+function) {
			continue
		}
		out = append(out, deadLetter{seq: seq, subject: m.Subject, header: m.Header, data: m.Data, at: m.Time})
	}
	return out, nil
}

func deadLetterInfo(d deadLetter, withPayload bool) api.DeadLetter {
	n, _ := strconv.Atoi(d.header.Get(hdrDLQCount))
	code, _ := strconv.Atoi(d.header.Get(hdrDLQErrorCode))
	enq, _ := strconv.ParseInt(d.header.Get(hdrEvEnq), 10, 64)
	out := api.DeadLetter{RequestID: d.header.Get(hdrDLQRequestID), Function: d.header.Get(hdrEvFn), Qualifier: d.header.Get(hdrEvQual), Condition: d.header.Get(hdrDLQCondition),
		ErrorCode: code, ErrorMessage: d.header.Get(hdrDLQErrorMsg), ApproximateInvokeCount: n, EnqueuedNs: enq, DeadLetteredNs: d.at.UnixNano(), Sequence: d.seq}
	if withPayload {
		out.Payload = string(d.data)
	}
	return out
}

func (g *Gateway) asyncOr503(w http.ResponseWriter) bool {
	if g.async == nil {
		writeError(w, errService("asynchronous invocation needs JetStream, which this gateway's NATS server does not offer"))
		return false
	}
	return true
}

func (g *Gateway) handleDLQList(w http.ResponseWriter, r *http.Request) {
	if !g.asyncOr503(w) {
		return
	}
	dls, err := g.deadLetters(r.Context(), g.account(r), r.URL.Query().Get("function"))
	if err != nil {
		writeError(w, errService(err.Error()))
		return
	}
	out := []api.DeadLetter{}
	for _, d := range dls {
		out = append(out, deadLetterInfo(d, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"DeadLetters": out})
}

func (g *Gateway) handleDLQShow(w http.ResponseWriter, r *http.Request) {
	if !g.asyncOr503(w) {
		return
	}
	dls, err := g.deadLetters(r.Context(), g.account(r), "")
	if err != nil {
		writeError(w, errService(err.Error()))
		return
	}
	for _, d := range dls {
		if d.header.Get(hdrDLQRequestID) == r.PathValue("id") {
			writeJSON(w, http.StatusOK, deadLetterInfo(d, true))
			return
		}
	}
	writeError(w, errNotFound("No dead-lettered event with request id "+clip(r.PathValue("id"))))
}

// handleDLQRedrive puts dead-lettered events (one request id, one
// function's, or all of the account's) back in the queue as new attempts
// (trigger redrive), then removes them from the dead-letter stream.
func (g *Gateway) handleDLQRedrive(w http.ResponseWriter, r *http.Request) {
	if !g.asyncOr503(w) {
		return
	}
	var in struct {
		Function  string `json:"Function"`
		RequestID string `json:"RequestId"`
	}
	if lerr := g.decodeBody(r, &in); lerr != nil {
		writeError(w, lerr)
		return
	}
	dls, err := g.deadLetters(r.Context(), g.account(r), in.Function)
	if err != nil {
		writeError(w, errService(err.Error()))
		return
	}
	n := 0
	for _, d := range dls {
		id := d.header.Get(hdrDLQRequestID)
		if in.RequestID != "" && id != in.RequestID {
			continue
		}
		// A redriven event gets a fresh age: Lambda's maximum age is about
		// the time in the queue, and a redrive is a new enqueue.
		m := eventMsg(g.account(r), d.header.Get(hdrEvFn), d.header.Get(hdrEvQual), id, id+"/redrive/"+strconv.FormatUint(d.seq, 10), api.TriggerRedrive, d.data)
		if _, err := g.async.js.PublishMsg(r.Context(), m); err != nil {
			writeError(w, errService("redrive of "+id+": "+err.Error()))
			return
		}
		g.dropState(id)
		_ = g.async.dlq.DeleteMsg(r.Context(), d.seq)
		n++
	}
	writeJSON(w, http.StatusOK, map[string]int{"Redriven": n})
}

// asyncStatus is the queue's state for `status`.
func (g *Gateway) asyncStatus(ctx context.Context) *api.AsyncStatus {
	if g.async == nil {
		return nil
	}
	a := g.async
	out := &api.AsyncStatus{Gateway: g.cfg.ID, Received: a.received.Load(), Dropped: a.dropped.Load(), DeadLetterErrors: a.deadLetterErrors.Load(), DestinationDeliveryFailures: a.destinationFailures.Load()}
	if ci, err := g.async.cons.Info(ctx); err == nil {
		out.Queued = int(ci.NumPending)
		out.InFlight = ci.NumAckPending
		out.Redelivered = ci.NumRedelivered
	}
	if si, err := g.async.dlq.Info(ctx); err == nil {
		out.DeadLetters = int(si.State.Msgs)
	}
	return out
}
