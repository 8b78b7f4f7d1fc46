package gateway

import (
	"net/http"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/wire"
)

// The coldstart API for per-function platform options: injected faults
// (coldstart chaos inject|clear) and platform idempotency (coldstart
// function set-idempotency). Both are ledger settings every node reads.

func (g *Gateway) setOptions(w http.ResponseWriter, r *http.Request, build func(o *wire.SetFunctionOptions) *lambdaError) {
	e, acct, ok := g.function(w, r)
	if !ok {
		return
	}
	o := &wire.SetFunctionOptions{Account: acct, Function: e.fn.Name}
	if lerr := build(o); lerr != nil {
		writeError(w, lerr)
		return
	}
	resp, err := g.askPlacement(r.Context(), wire.Request{Op: wire.OpSetOptions, Options: o}, controlBudget)
	if err != nil {
		writeError(w, placementError(err))
		return
	}
	g.cache.put(*resp.Function, resp.Index)
	writeJSON(w, http.StatusOK, api.FunctionOptions{Fault: resp.Function.Fault, Idempotency: resp.Function.Idempotency})
}

func (g *Gateway) handlePutFault(w http.ResponseWriter, r *http.Request) {
	g.setOptions(w, r, func(o *wire.SetFunctionOptions) *lambdaError {
		var in api.FaultInput
		if lerr := g.decodeBody(r, &in); lerr != nil {
			return lerr
		}
		fc := &wire.FaultConfig{Kind: in.Kind, Rate: in.Rate, Seed: in.Seed, Nth: in.Nth, DelayMs: in.DelayMs}
		if in.ForSeconds > 0 {
			fc.UntilNs = time.Now().Add(time.Duration(in.ForSeconds * float64(time.Second))).UnixNano()
		}
		o.Fault = fc
		return nil
	})
}

func (g *Gateway) handleDeleteFault(w http.ResponseWriter, r *http.Request) {
	g.setOptions(w, r, func(o *wire.SetFunctionOptions) *lambdaError { o.ClearFault = true; return nil })
}

func (g *Gateway) handlePutIdempotency(w http.ResponseWriter, r *http.Request) {
	g.setOptions(w, r, func(o *wire.SetFunctionOptions) *lambdaError {
		var in api.IdempotencyInput
		if lerr := g.decodeBody(r, &in); lerr != nil {
			return lerr
		}
		o.Idempotency = &wire.IdempotencyConfig{Key: in.Key, TTLMs: int64(in.TTLSeconds * 1000)}
		return nil
	})
}

func (g *Gateway) handleDeleteIdempotency(w http.ResponseWriter, r *http.Request) {
	g.setOptions(w, r, func(o *wire.SetFunctionOptions) *lambdaError { o.ClearIdempotency = true; return nil })
}

func (g *Gateway) handleGetOptions(w http.ResponseWriter, r *http.Request) {
	e, _, ok := g.function(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, api.FunctionOptions{Fault: e.fn.Fault, Idempotency: e.fn.Idempotency})
}
