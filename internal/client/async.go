package client

import (
	"context"
	"net/url"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// The coldstart APIs of asynchronous invocations and platform options:
// dead letters, injected faults, platform idempotency.

// DeadLetters lists the account's dead-lettered events (one function's
// when function is set).
func (c *Client) DeadLetters(ctx context.Context, function string) ([]api.DeadLetter, error) {
	var out struct{ DeadLetters []api.DeadLetter }
	path := api.PathDLQ
	if function != "" {
		path += "?function=" + url.QueryEscape(function)
	}
	if err := c.do(ctx, "GET", path, nil, &out); err != nil {
		return nil, err
	}
	return out.DeadLetters, nil
}

// DeadLetter shows one dead-lettered event, payload included.
func (c *Client) DeadLetter(ctx context.Context, requestID string) (*api.DeadLetter, error) {
	var out api.DeadLetter
	if err := c.do(ctx, "GET", api.PathDLQ+"/"+url.PathEscape(requestID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Redrive puts dead-lettered events back in the queue: one request id,
// one function's, or (both empty) all of the account's.
func (c *Client) Redrive(ctx context.Context, function, requestID string) (int, error) {
	var out struct{ Redriven int }
	in := map[string]string{"Function": function, "RequestId": requestID}
	if err := c.do(ctx, "POST", api.PathDLQ+"/redrive", in, &out); err != nil {
		return 0, err
	}
	return out.Redriven, nil
}

// InjectFault sets a function's injected fault.
func (c *Client) InjectFault(ctx context.Context, function string, in api.FaultInput) (*api.FunctionOptions, error) {
	var out api.FunctionOptions
	if err := c.do(ctx, "PUT", api.PathFunctionOptions+url.PathEscape(function)+"/fault", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClearFault removes a function's injected fault.
func (c *Client) ClearFault(ctx context.Context, function string) error {
	return c.do(ctx, "DELETE", api.PathFunctionOptions+url.PathEscape(function)+"/fault", nil, nil)
}

// SetIdempotency turns on the platform's dedupe of a function's
// invocations.
func (c *Client) SetIdempotency(ctx context.Context, function string, in api.IdempotencyInput) (*api.FunctionOptions, error) {
	var out api.FunctionOptions
	if err := c.do(ctx, "PUT", api.PathFunctionOptions+url.PathEscape(function)+"/idempotency", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClearIdempotency turns it off.
func (c *Client) ClearIdempotency(ctx context.Context, function string) error {
	return c.do(ctx, "DELETE", api.PathFunctionOptions+url.PathEscape(function)+"/idempotency", nil, nil)
}
