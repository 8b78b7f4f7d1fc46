package placement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrUnavailable means no placement leader answered: no quorum, or every
// placement node is down. Callers answer ServiceException, never 429.
var ErrUnavailable = errors.New("placement unavailable")

// ErrNoLeader is the ErrUnavailable that NATS itself reports: nothing
// subscribes the leader's subjects, so no placement node serves as leader.
var ErrNoLeader = fmt.Errorf("%w: no placement leader (Raft has no quorum)", ErrUnavailable)

// Client sends requests to the placement service over NATS.
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
// *Error; a missing or silent leader as ErrUnavailable.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	return c.do(ctx, SubjectLeader, req)
}

// WorkerOp sends a worker's own request (release, reconcile, renew) on its
// subject, where NATS lets only that worker publish.
func (c *Client) WorkerOp(ctx context.Context, worker, op string, req Request) (Response, error) {
	return c.do(ctx, WorkerOpSubject(worker, op), req)
}

// GatewayOp sends a gateway's own request (create_sandbox, cancel) on its
// subject, so placement knows which gateway asked.
func (c *Client) GatewayOp(ctx context.Context, gateway, op string, req Request) (Response, error) {
	return c.do(ctx, GatewayOpSubject(gateway, op), req)
}

// Read asks any placement node for its snapshot; it works without a leader.
func (c *Client) Read(ctx context.Context) (*Snapshot, error) {
	r, err := c.do(ctx, SubjectRead, Request{Op: OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

// ReadNode asks one placement node for its own snapshot.
func (c *Client) ReadNode(ctx context.Context, id string) (*Snapshot, error) {
	r, err := c.do(ctx, SubjectNodeRead+"."+id, Request{Op: OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

// ReadLeader asks the leader for its snapshot: the freshest view, for a
// cache miss that may be a function created a moment ago elsewhere.
func (c *Client) ReadLeader(ctx context.Context) (*Snapshot, error) {
	r, err := c.do(ctx, SubjectLeader, Request{Op: OpSnapshot})
	if err != nil {
		return nil, err
	}
	return r.Snapshot, nil
}

func (c *Client) do(ctx context.Context, subject string, req Request) (Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	m, err := c.nc.RequestWithContext(ctx, subject, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return Response{}, ErrNoLeader
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return Response{}, fmt.Errorf("%w: placement did not answer in time", ErrUnavailable)
	case err != nil:
		return Response{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var r Response
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Response{}, fmt.Errorf("%w: bad placement answer: %v", ErrUnavailable, err)
	}
	if r.Error != nil {
		if r.Error.Type == "ServiceException" {
			return r, fmt.Errorf("%w: %s", ErrUnavailable, r.Error.Message)
		}
		return r, r.Error
	}
	return r, nil
}
