package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/wire"
)

// Client sends requests to the placement service over NATS, on wire's
// subjects. Gateways and workers hold it through their own interfaces
// (gateway.Placer, worker.Placement).
type Client struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewClient returns a client; timeout bounds each request (the cold-start
// path must fail fast when placement is down).
func NewClient(nc *nats.Conn, timeout time.Duration) *Client {
	if timeout == 0 {
		timeout = 800 * time.Millisecond
	}
	return &Client{nc: nc, timeout: timeout}
}

// Do sends a request to the leader. Typed placement errors come back as
// *wire.Error; a missing or silent leader, or a retryable
// ServiceException, as wire.ErrUnavailable (wire.ErrNoLeader when NATS
// reports that nothing serves the subject).
func (c *Client) Do(ctx context.Context, req wire.Request) (wire.Response, error) {
	return c.do(ctx, wire.SubjectLeader, req)
}

// WorkerOp sends a worker's own request (release, reconcile, renew) on its
// subject, where NATS lets only that worker publish.
func (c *Client) WorkerOp(ctx context.Context, worker, op string, req wire.Request) (wire.Response, error) {
	return c.do(ctx, wire.WorkerOpSubject(worker, op), req)
}

// GatewayOp sends a gateway's own request (create_sandbox, cancel) on its
// subject, so placement knows which gateway asked.
func (c *Client) GatewayOp(ctx context.Context, gateway, op string, req wire.Request) (wire.Response, error) {
	return c.do(ctx, wire.GatewayOpSubject(gateway, op), req)
}

// Read asks any placement node for its snapshot; it works without a leader.
func (c *Client) Read(ctx context.Context) (*wire.Snapshot, error) {
	r, err := c.do(ctx, wire.SubjectRead, wire.Request{Op: wire.OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

// ReadNode asks one placement node for its own snapshot.
func (c *Client) ReadNode(ctx context.Context, id string) (*wire.Snapshot, error) {
	r, err := c.do(ctx, wire.NodeReadSubject(id), wire.Request{Op: wire.OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

// ReadLeader asks the leader for its snapshot: the freshest view, for a
// cache miss that may be a function created a moment ago elsewhere.
func (c *Client) ReadLeader(ctx context.Context) (*wire.Snapshot, error) {
	r, err := c.do(ctx, wire.SubjectLeader, wire.Request{Op: wire.OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

func (c *Client) do(ctx context.Context, subject string, req wire.Request) (wire.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if d, ok := ctx.Deadline(); ok {
		req.BudgetNs = int64(time.Until(d))
	}
	b, err := json.Marshal(req)
	if err != nil {
		return wire.Response{}, err
	}
	m, err := c.nc.RequestWithContext(ctx, subject, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return wire.Response{}, wire.ErrNoLeader
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return wire.Response{}, fmt.Errorf("%w: placement did not answer in time", wire.ErrUnavailable)
	case err != nil:
		return wire.Response{}, fmt.Errorf("%w: %v", wire.ErrUnavailable, err)
	}
	var r wire.Response
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return wire.Response{}, fmt.Errorf("%w: bad placement answer: %v", wire.ErrUnavailable, err)
	}
	if r.Error != nil {
		if r.Error.Type == "ServiceException" {
			return r, fmt.Errorf("%w: %s", wire.ErrUnavailable, r.Error.Message)
		}
		return r, r.Error
	}
	return r, nil
}
