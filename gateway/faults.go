package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// Fault injection from the platform (coldstart chaos inject): a
// function's FaultConfig, from the replicated ledger, applies from the
// next invocation. The gateway decides which invocations are hit, so a
// seeded rate or a list of invocation numbers is a replayable schedule
// (per gateway: each counts the invocations it routes since the fault was
// set). It carries out the faults that happen before or beside the
// handler (error-before, duplicate-delivery) and names the others to the
// worker (HdrFault).

type faultState struct {
	n   int
	rnd *rand.Rand
}

type faultPicker struct {
	mu sync.Mutex
	st map[string]*faultState // account/function@SetNs
}

// pickFault says which fault, if any, this invocation of e suffers.
func (g *Gateway) pickFault(e *fnEntry) string {
	fc := e.fn.Fault
	if fc == nil || (fc.UntilNs != 0 && time.Now().UnixNano() > fc.UntilNs) {
		return ""
	}
	key := wire.FunctionKey(e.fn.Account, e.fn.Name) + "@" + strconv.FormatInt(fc.SetNs, 10)
	p := &g.faults
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		p.st = map[string]*faultState{}
	}
	s := p.st[key]
	if s == nil {
		seed := uint64(fc.Seed)
		if seed == 0 {
			seed = rand.Uint64()
		}
		s = &faultState{rnd: rand.New(rand.NewPCG(seed, 0x6661756c74))}
		p.st[key] = s
	}
	s.n++
	hit := false
	if len(fc.Nth) > 0 {
		hit = slices.Contains(fc.Nth, s.n)
	} else {
		hit = s.rnd.Float64() < fc.Rate
	}
	if !hit {
		return ""
	}
	return fc.Kind
}

// faultHeader is the HdrFault value of a fault the worker carries out.
func faultHeader(e *fnEntry, kind string, timeoutMs int64) string {
	if kind != wire.FaultAddDelay {
		return kind
	}
	d := timeoutMs / 2
	if e.fn.Fault != nil && e.fn.Fault.DelayMs > 0 {
		d = e.fn.Fault.DelayMs
	}
	return kind + ":" + strconv.FormatInt(d, 10)
}

// errInjected is error-before's answer: a platform error, the handler not
// run (FIS's invocation-error with preventExecution).
func errInjected() *lambdaError {
	return &lambdaError{http.StatusInternalServerError, "ServiceException", "injected fault error-before: the platform failed the invocation before its handler ran", ""}
}

// injectedRecord records an invocation the platform failed by injection
// before any sandbox ran it.
func (g *Gateway) injectedRecord(reqID string, k fnVersion, kind string, attempt int, trigger string) {
	g.recs.Add(api.Record{RequestID: reqID, Account: k.Account, Function: k.Function, Version: k.Version, ReceivedNs: time.Now().UnixNano(),
		Outcome: api.OutcomeInjected, Fault: kind, Gateway: g.cfg.ID, Attempt: attempt, Trigger: trigger})
}

// applyFault prepares msg for the fault picked for it: it answers false
// with the caller's error for error-before, starts a concurrent duplicate
// for duplicate-delivery, and otherwise names the fault to the worker.
func (g *Gateway) applyFault(ctx context.Context, e *fnEntry, msg *nats.Msg, k fnVersion, spec string, timeoutMs int64, attempt int, trigger string) *lambdaError {
	kind := g.pickFault(e)
	switch kind {
	case "":
		return nil
	case wire.FaultErrorBefore:
		g.injectedRecord(msg.Header.Get(wire.HdrRequestID), k, kind, attempt, trigger)
		return errInjected()
	case wire.FaultDuplicateDelivery:
		dup := &nats.Msg{Data: msg.Data, Header: nats.Header{}}
		for h, v := range msg.Header {
			dup.Header[h] = v
		}
		dup.Header.Set(wire.HdrTrigger, api.TriggerDuplicate)
		dup.Header.Set(wire.HdrFault, kind)
		msg.Header.Set(wire.HdrFault, kind)
		go func() {
			dctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeoutMs)*time.Millisecond+invokeMargin)
			defer cancel()
			g.route(dctx, dup, k, spec)
		}()
		return nil
	}
	msg.Header.Set(wire.HdrFault, faultHeader(e, kind, timeoutMs))
	return nil
}
