package loadgen

import (
	"context"

	"github.com/coldstart-dev/coldstart/internal/client"
)

// ClientInvoker adapts the gateway client to Invoker.
type ClientInvoker struct {
	Client    *client.Client
	Qualifier string
	// InvocationType is RequestResponse (default) or Event: with Event a
	// request counts as ok once the gateway stored it (202), and what
	// happens to it later shows in the records.
	InvocationType string
}

// Invoke calls the function through the gateway's Invoke API.
func (c ClientInvoker) Invoke(ctx context.Context, function string, payload []byte) (Result, error) {
	res, err := c.Client.Invoke(ctx, function, payload, client.InvokeOptions{Qualifier: c.Qualifier, InvocationType: c.InvocationType})
	if err != nil {
		return Result{}, err
	}
	out := Result{
		Cold:          res.Cold,
		InitMs:        res.InitMs,
		DurationMs:    res.DurationMs,
		BilledMs:      res.BilledMs,
		FunctionError: res.FunctionError,
		Sandbox:       res.Sandbox,
		Worker:        res.Worker,
	}
	if res.FunctionError != "" {
		out.ErrorType, _ = res.FunctionErrorBody()
	}
	return out, nil
}
