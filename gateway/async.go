package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// Asynchronous invocations. An Event invocation is answered 202 only once
// JetStream acknowledged it (stream CS_EVENTS, Nats-Msg-Id the
// invocation's id, so a client's retry of the same call is stored once).
// Every gateway runs dispatchers on one shared durable pull consumer: an
// event goes through the same admission and routing as a synchronous
// call; a throttle or a platform error puts it back with exponential
// backoff (1 s to 5 min) until its maximum age, a function error is
// retried MaximumRetryAttempts times after 1 and 2 minutes, and an event
// that exhausted its retries or aged out goes to the dead-letter stream
// (CS_DLQ) and its OnFailure destination. A dispatcher that dies
// mid-invocation stops acknowledging it: JetStream redelivers it after the
// ack wait (at least once). Every delay is divided by TimeScale.

// Streams, subjects and the consumer of asynchronous invocations.
const (
	EventsStream     = "CS_EVENTS"
	DLQStream        = "CS_DLQ"
	AsyncStateBucket = "cs-async"
	dispatchDurable  = "dispatch"
	eventsPrefix     = "cs.events."
	dlqPrefix        = "cs.dlq."
	// DestinationPrefix prefixes the NATS subject of a nats: destination.
	DestinationPrefix = "cs.dest."
	// MaxAsyncPayload is Lambda's 1 MB Event payload limit (since Oct 2025).
	MaxAsyncPayload = 1 << 20
)

// Headers of an event message (besides Nats-Msg-Id).
const (
	hdrEvReq     = "Cs-Req"
	hdrEvAcct    = "Cs-Acct"
	hdrEvFn      = "Cs-Fn"
	hdrEvQual    = "Cs-Qual"
	hdrEvTrigger = "Cs-Trigger"
	hdrEvEnq     = "Cs-Enq" // Unix ns the event was first accepted (kept across redrives)
	// Dead-letter headers, Lambda's DLQ message attributes.
	hdrDLQRequestID = "RequestID"
	hdrDLQErrorCode = "ErrorCode"
	hdrDLQErrorMsg  = "ErrorMessage"
	hdrDLQCondition = "Condition"
	hdrDLQCount     = "ApproximateInvokeCount"
	hdrDLQAt        = "Cs-Dead"
)

// Lambda's retry timing, unscaled.
const (
	functionErrorWait1 = time.Minute
	functionErrorWait2 = 2 * time.Minute
	backoffMin         = time.Second
	backoffMax         = 5 * time.Minute
	// dispatchAckWait is how long an event may go without an in-progress
	// ack before JetStream redelivers it (a dispatcher died).
	dispatchAckWait = 30 * time.Second
)

// asyncState is what the dispatchers remember about one event across its
// deliveries: how often the function ran and failed.
type asyncState struct {
	Invokes int    `json:"invokes"`
	Errors  int    `json:"errors"`
	Last    string `json:"last,omitempty"` // the last error, for the dead-letter record
	Code    int    `json:"code,omitempty"`
}

type async struct {
	// This gateway's counts of Lambda's async metrics (also on /metrics),
	// for status.
	received, dropped, deadLetterErrors, destinationFailures atomic.Int64

	js      jetstream.JetStream
	kv      jetstream.KeyValue
	events  jetstream.Stream
	dlq     jetstream.Stream
	cons    jetstream.Consumer
	slots   chan struct{}
	wg      sync.WaitGroup
	stopped chan struct{}
}

// scaled divides a platform delay by the time scale.
func (g *Gateway) scaled(d time.Duration) time.Duration {
	if g.cfg.TimeScale <= 0 || g.cfg.TimeScale == 1 {
		return d
	}
	s := time.Duration(float64(d) / g.cfg.TimeScale)
	if s < time.Millisecond {
		s = time.Millisecond
	}
	return s
}

// startAsync creates (or binds to) the streams, the state bucket and the
// shared consumer, and starts this gateway's dispatchers.
func (g *Gateway) startAsync() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(g.nc)
	if err != nil {
		return err
	}
	a := &async{js: js, stopped: make(chan struct{})}
	maxAge := 7 * 24 * time.Hour
	if a.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: EventsStream, Subjects: []string{eventsPrefix + ">"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute, MaxAge: maxAge, Replicas: max(1, g.cfg.AsyncReplicas)}); err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	if a.dlq, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: DLQStream, Subjects: []string{dlqPrefix + ">"}, Storage: jetstream.FileStorage,
		Duplicates: 10 * time.Minute, MaxAge: 14 * 24 * time.Hour, Replicas: max(1, g.cfg.AsyncReplicas)}); err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	if a.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: AsyncStateBucket, TTL: maxAge, Storage: jetstream.FileStorage, Replicas: max(1, g.cfg.AsyncReplicas)}); err != nil {
		return fmt.Errorf("async state bucket: %w", err)
	}
	ackWait := g.scaled(dispatchAckWait)
	if ackWait < time.Second {
		ackWait = time.Second // in-progress acks go out every third of it
	}
	if a.cons, err = a.events.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: dispatchDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
		MaxDeliver: -1, MaxAckPending: 4096}); err != nil {
		return fmt.Errorf("dispatch consumer: %w", err)
	}
	n := g.cfg.Dispatchers
	if n == 0 {
		n = DefaultDispatchers
	}
	g.async = a
	if n < 0 {
		return nil // this gateway stores events; others dispatch them
	}
	a.slots = make(chan struct{}, n)
	a.wg.Add(1)
	go g.dispatchLoop()
	return nil
}

// DefaultDispatchers is how many events a gateway invokes at once.
const DefaultDispatchers = 32

func (g *Gateway) stopAsync() {
	if g.async == nil {
		return
	}
	close(g.async.stopped)
	g.async.wg.Wait()
}

// eventSubject is where an account's function's events are stored.
func eventSubject(account, function string) string {
	return eventsPrefix + account + "." + function
}

// eventID derives a stable event id from the SDK's invocation id
// (amz-sdk-invocation-id, the same on every retry of one call), so that a
// retried call is stored once and answered with the same request id.
func eventID(account, function, invocationID string) string {
	sum := sha256.Sum256([]byte(account + "\x00" + function + "\x00" + invocationID))
	s := hex.EncodeToString(sum[:16])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// eventMsg is an event for CS_EVENTS: accepted now (its age starts now),
// stored once per msgID.
func eventMsg(account, function, qualifier, reqID, msgID, trigger string, payload []byte) *nats.Msg {
	m := nats.NewMsg(eventSubject(account, function))
	m.Data = payload
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(hdrEvReq, reqID)
	m.Header.Set(hdrEvAcct, account)
	m.Header.Set(hdrEvFn, function)
	m.Header.Set(hdrEvQual, qualifier)
	m.Header.Set(hdrEvTrigger, trigger)
	m.Header.Set(hdrEvEnq, strconv.FormatInt(time.Now().UnixNano(), 10))
	return m
}

// enqueue stores an Event invocation and answers 202.
func (g *Gateway) enqueue(w http.ResponseWriter, r *http.Request, e *fnEntry, acct, qualifier string, payload []byte) {
	if g.async == nil {
		writeError(w, errService("asynchronous invocation needs JetStream, which this gateway's NATS server does not offer"))
		return
	}
	reqID := w.Header().Get(api.HeaderRequestID)
	if inv := r.Header.Get("Amz-Sdk-Invocation-Id"); inv != "" && len(inv) <= 128 {
		reqID = eventID(acct, e.fn.Name, inv)
		w.Header().Set(api.HeaderRequestID, reqID)
	}
	m := eventMsg(acct, e.fn.Name, qualifier, reqID, reqID, api.TriggerEvent, payload)
	if ic := e.fn.Idempotency; ic != nil {
		if name, ok := strings.CutPrefix(ic.Key, "header:"); ok {
			m.Header.Set(wire.HdrIdemKey, r.Header.Get(name))
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if _, err := g.async.js.PublishMsg(ctx, m); err != nil {
		writeError(w, errService("the event could not be stored: "+err.Error()))
		return
	}
	g.m.asyncReceived.Inc()
	g.async.received.Add(1)
	w.WriteHeader(http.StatusAccepted)
}

// dispatchLoop pulls events while this gateway has free dispatch slots:
// a burst waits in the stream, it never piles onto busy workers.
func (g *Gateway) dispatchLoop() {
	a := g.async
	defer a.wg.Done()
	for {
		select {
		case <-a.stopped:
			return
		case <-g.done:
			return
		case a.slots <- struct{}{}:
		}
		free := 1 + cap(a.slots) - len(a.slots)
		for i := 1; i < free; i++ {
			select {
			case a.slots <- struct{}{}:
			default:
				free = i
			}
		}
		batch, err := a.cons.Fetch(free, jetstream.FetchMaxWait(500*time.Millisecond))
		got := 0
		if err == nil {
			for m := range batch.Messages() {
				got++
				// Not waited for on Stop: a stopping gateway is like a dead
				// one, its unacknowledged events are redelivered elsewhere.
				go func(m jetstream.Msg) {
					defer func() { <-a.slots }()
					g.dispatch(m)
				}(m)
			}
		}
		for ; got < free; got++ {
			<-a.slots
		}
		if err != nil {
			select {
			case <-a.stopped:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// outcome is one attempt's result as the dispatcher sees it.
type outcome struct {
	reply *nats.Msg
	lerr  *lambdaError
	ver   string
}

// dispatch runs one delivery of an event.
func (g *Gateway) dispatch(m jetstream.Msg) {
	h := m.Headers()
	reqID, acct, fn, qual := h.Get(hdrEvReq), h.Get(hdrEvAcct), h.Get(hdrEvFn), h.Get(hdrEvQual)
	meta, err := m.Metadata()
	if err != nil || reqID == "" || acct == "" || fn == "" {
		g.log.Warn("dropping a malformed event", "subject", m.Subject())
		_ = m.Term()
		return
	}
	enq, _ := strconv.ParseInt(h.Get(hdrEvEnq), 10, 64)
	if enq == 0 {
		enq = meta.Timestamp.UnixNano()
	}
	age := time.Since(time.Unix(0, enq))
	g.m.asyncAge.Observe(age.Seconds())
	e := g.lookup(context.Background(), acct, fn)
	if e != nil {
		g.m.fns.get(g.m, acct, e.fn.Name).asyncAge.Observe(age.Seconds())
	}
	if e == nil {
		if g.functionGone(acct, fn) {
			// Deleted since it was queued: Lambda drops its events.
			g.m.asyncDropped.Inc()
			g.async.dropped.Add(1)
			_ = m.Ack()
			return
		}
		// Placement cannot say (no leader yet, a gateway just started):
		// the event waits, it is never dropped on a guess.
		_ = m.NakWithDelay(g.backoff(int(meta.NumDelivered)))
		return
	}
	cfg := e.fn.EventConfigs[eventConfigKey(qual)]
	// State exists only after a delivery that failed: a first delivery
	// skips the round trip (most events have none).
	var st asyncState
	hadState := meta.NumDelivered > 1 || h.Get(hdrEvTrigger) == api.TriggerRedrive
	if hadState {
		st = g.loadState(reqID)
	}
	if age > g.scaled(time.Duration(cfg.MaxAgeSeconds())*time.Second) {
		g.failEvent(m, e, qual, reqID, st, "EventAgeExceeded", outcome{})
		return
	}
	if e.fn.Reserved != nil && *e.fn.Reserved == 0 {
		// Reserved concurrency 0: straight to the failure path, no retries.
		st.Last, st.Code = "Rate Exceeded. (reserved concurrency 0)", http.StatusTooManyRequests
		g.failEvent(m, e, qual, reqID, st, "RetriesExhausted", outcome{})
		return
	}
	// Keep the event ours while it runs: in-progress acks every third of
	// the ack wait.
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(g.scaledAckWait() / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	trigger := h.Get(hdrEvTrigger)
	if trigger == api.TriggerEvent && meta.NumDelivered > 1 {
		trigger = api.TriggerRetry
	}
	out := g.invokeEvent(e, acct, qual, reqID, m.Data(), st.Invokes+1, trigger, h.Get(wire.HdrIdemKey))
	close(stop)
	switch {
	case out.lerr != nil && (out.lerr.Status == http.StatusTooManyRequests || out.lerr.Status >= 500):
		// Throttled or a platform error: back in the queue, with backoff,
		// until the event's maximum age. The function did not run.
		st.Last, st.Code = out.lerr.Type+": "+out.lerr.Message, out.lerr.Status
		g.saveState(reqID, st)
		_ = m.NakWithDelay(g.backoff(int(meta.NumDelivered)))
	case out.lerr != nil:
		// The event cannot run at all (function gone, bad qualifier).
		st.Last, st.Code = out.lerr.Type+": "+out.lerr.Message, out.lerr.Status
		g.failEvent(m, e, qual, reqID, st, "RetriesExhausted", out)
	case out.reply.Header.Get(wire.HdrFuncError) != "":
		st.Invokes++
		st.Errors++
		st.Last, st.Code = functionErrorText(out.reply.Data), http.StatusOK
		if st.Errors > cfg.Retries() {
			g.failEvent(m, e, qual, reqID, st, "RetriesExhausted", out)
			return
		}
		g.saveState(reqID, st)
		wait := functionErrorWait1
		if st.Errors >= 2 {
			wait = functionErrorWait2
		}
		_ = m.NakWithDelay(g.scaled(wait))
	default:
		st.Invokes++
		if cfg != nil && cfg.OnSuccess != "" {
			d := cfg.OnSuccess
			g.deliver(e, d, destinationRecord(e, qual, reqID, "Success", st.Invokes, m.Data(), out))
		}
		_ = m.Ack()
		if hadState {
			g.dropState(reqID)
		}
	}
}

// functionGone reports whether placement, asked now, has no such
// function; false when it cannot be asked.
func (g *Gateway) functionGone(acct, fn string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sn, err := g.pl.ReadLeader(ctx)
	if err != nil || sn == nil {
		return false
	}
	for _, f := range sn.Functions {
		if f.Account == acct && f.Name == fn {
			return false
		}
	}
	return true
}

func (g *Gateway) scaledAckWait() time.Duration {
	d := g.scaled(dispatchAckWait)
	if d < time.Second {
		d = time.Second
	}
	return d
}

// backoff is the wait before the n-th redelivery after a throttle or a
// platform error: 1 s doubling to 5 min, scaled.
func (g *Gateway) backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return g.scaled(min(d, backoffMax))
}

func eventConfigKey(q string) string {
	if q == "" {
		return LatestVersion
	}
	return q
}

func functionErrorText(body []byte) string {
	var b struct {
		Type string `json:"errorType"`
		Msg  string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &b) == nil && (b.Type != "" || b.Msg != "") {
		return b.Type + ": " + b.Msg
	}
	if len(body) > 1024 {
		body = body[:1024]
	}
	return string(body)
}

// invokeEvent runs one attempt of an event through the same path as a
// synchronous invocation.
func (g *Gateway) invokeEvent(e *fnEntry, acct, qual, reqID string, payload []byte, attempt int, trigger, idemKey string) outcome {
	version, spec, rev, timeoutMs, lerr := e.resolve(qual)
	if lerr != nil {
		return outcome{lerr: lerr}
	}
	key := fnVersion{Account: acct, Function: e.fn.Name, Version: version}
	if !g.rate.allow(acct, g.cache.limit(acct), int(g.gateways.Load())) {
		return outcome{lerr: errThrottle(string(quota.ReasonFunctionRate)), ver: version}
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	msg := &nats.Msg{Data: payload, Header: nats.Header{}}
	msg.Header.Set(wire.HdrRequestID, reqID)
	msg.Header.Set(wire.HdrAccount, acct)
	msg.Header.Set(wire.HdrFunction, e.fn.Name)
	msg.Header.Set(wire.HdrVersion, version)
	msg.Header.Set(wire.HdrRev, rev)
	msg.Header.Set(wire.HdrAttempt, strconv.Itoa(attempt))
	msg.Header.Set(wire.HdrTrigger, trigger)
	setIdempotency(e, msg, nil)
	if idemKey != "" {
		msg.Header.Set(wire.HdrIdemKey, idemKey)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMs)*time.Millisecond+invokeMargin)
	defer cancel()
	if lerr := g.applyFault(ctx, e, msg, key, spec, timeoutMs, attempt, trigger); lerr != nil {
		return outcome{lerr: lerr, ver: version}
	}
	reply, lerr := g.route(ctx, msg, key, spec)
	if lerr != nil {
		if lerr.Status == http.StatusTooManyRequests {
			g.m.throttles.Inc()
			g.m.fns.get(g.m, acct, e.fn.Name).throttles.Inc()
			g.recs.Add(api.Record{RequestID: reqID, Account: acct, Function: e.fn.Name, Version: version, ReceivedNs: time.Now().UnixNano(), Outcome: api.OutcomeThrottled, Reason: lerr.Reason, Gateway: g.cfg.ID, Attempt: attempt, Trigger: trigger})
		}
		return outcome{lerr: lerr, ver: version}
	}
	g.m.invocations.Inc()
	if reply.Header.Get(wire.HdrFuncError) != "" {
		g.m.errors.Inc()
	}
	g.m.fns.get(g.m, acct, e.fn.Name).ran(reply.Header.Get(wire.HdrCold) == "true", reply.Header.Get(wire.HdrInitMs), reply.Header.Get(wire.HdrDurMs), reply.Header.Get(wire.HdrFuncError) != "")
	return outcome{reply: reply, ver: version}
}

// failEvent ends an event on the failure path: a dead-letter record and
// the OnFailure destination, then the event leaves the queue.
func (g *Gateway) failEvent(m jetstream.Msg, e *fnEntry, qual, reqID string, st asyncState, condition string, out outcome) {
	g.m.asyncDropped.Inc()
	g.m.fns.get(g.m, e.fn.Account, e.fn.Name).asyncDropped.Inc()
	g.async.dropped.Add(1)
	dl := nats.NewMsg(dlqPrefix + e.fn.Account + "." + e.fn.Name)
	dl.Data = m.Data()
	for k, v := range m.Headers() {
		if k != jetstream.MsgIDHeader {
			dl.Header[k] = v
		}
	}
	msgText := st.Last
	if len(msgText) > 1024 {
		msgText = msgText[:1024]
	}
	code := st.Code
	if code == 0 {
		code = http.StatusOK
	}
	dl.Header.Set(jetstream.MsgIDHeader, reqID+"/"+strconv.FormatUint(seqOf(m), 10))
	dl.Header.Set(hdrDLQRequestID, reqID)
	dl.Header.Set(hdrDLQErrorCode, strconv.Itoa(code))
	dl.Header.Set(hdrDLQErrorMsg, msgText)
	dl.Header.Set(hdrDLQCondition, condition)
	dl.Header.Set(hdrDLQCount, strconv.Itoa(st.Invokes))
	dl.Header.Set(hdrDLQAt, strconv.FormatInt(time.Now().UnixNano(), 10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.async.js.PublishMsg(ctx, dl); err != nil {
		g.m.deadLetterErrors.Inc()
		g.async.deadLetterErrors.Add(1)
		g.log.Warn("dead-letter publish failed", "request", reqID, "err", err)
	}
	cfg := e.fn.EventConfigs[eventConfigKey(qual)]
	if cfg != nil && cfg.OnFailure != "" {
		g.deliver(e, cfg.OnFailure, destinationRecord(e, qual, reqID, condition, st.Invokes, m.Data(), out))
	}
	_ = m.Ack()
	g.dropState(reqID)
}

func seqOf(m jetstream.Msg) uint64 {
	if meta, err := m.Metadata(); err == nil {
		return meta.Sequence.Stream
	}
	return 0
}

// destinationRecord is Lambda's destination record.
func destinationRecord(e *fnEntry, qual, reqID, condition string, invokes int, payload []byte, out outcome) []byte {
	arn := arnOf(e.fn.Account, e.fn.Name) + ":" + eventConfigKey(qual)
	rec := map[string]any{
		"version":   "1.0",
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"requestContext": map[string]any{
			"requestId": reqID, "functionArn": arn, "condition": condition, "approximateInvokeCount": invokes,
		},
		"requestPayload": rawOrString(payload),
	}
	if out.reply != nil {
		rc := map[string]any{"statusCode": 200, "executedVersion": out.ver}
		if fe := out.reply.Header.Get(wire.HdrFuncError); fe != "" {
			rc["functionError"] = fe
		}
		rec["responseContext"] = rc
		rec["responsePayload"] = rawOrString(out.reply.Data)
	} else if out.lerr != nil {
		rec["responseContext"] = map[string]any{"statusCode": out.lerr.Status, "executedVersion": out.ver, "functionError": out.lerr.Type}
		rec["responsePayload"] = map[string]string{"errorType": out.lerr.Type, "errorMessage": out.lerr.Message}
	}
	b, _ := json.Marshal(rec)
	return b
}

func rawOrString(b []byte) any {
	if len(b) > 0 && json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

// deliver sends a destination record: to another function (as an Event
// invocation of it) or on a NATS subject.
func (g *Gateway) deliver(from *fnEntry, dest string, record []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	switch {
	case strings.HasPrefix(dest, "nats:"):
		err = g.nc.Publish(DestinationPrefix+strings.TrimPrefix(dest, "nats:"), record)
		if err == nil {
			err = g.nc.FlushWithContext(ctx)
		}
	case strings.HasPrefix(dest, "arn:aws:lambda:"):
		ref, perr := ParseFunctionName(dest, "")
		if perr != nil {
			err = perr
			break
		}
		target := g.lookup(ctx, from.fn.Account, ref.Name)
		if target == nil {
			err = errors.New("destination function " + ref.Name + " not found")
			break
		}
		id := newRequestID()
		_, err = g.async.js.PublishMsg(ctx, eventMsg(from.fn.Account, ref.Name, ref.Qualifier, id, id, api.TriggerEvent, record))
	default:
		err = errors.New("unsupported destination " + dest)
	}
	if err != nil {
		g.m.destinationFailures.Inc()
		g.async.destinationFailures.Add(1)
		g.log.Warn("destination delivery failed", "destination", dest, "err", err)
	}
}

func (g *Gateway) loadState(reqID string) asyncState {
	var st asyncState
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if e, err := g.async.kv.Get(ctx, reqID); err == nil {
		_ = json.Unmarshal(e.Value(), &st)
	}
	return st
}

func (g *Gateway) saveState(reqID string, st asyncState) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, _ := json.Marshal(st)
	if _, err := g.async.kv.Put(ctx, reqID, b); err != nil {
		g.log.Warn("async state not saved", "request", reqID, "err", err)
	}
}

func (g *Gateway) dropState(reqID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = g.async.kv.Delete(ctx, reqID)
}
