package gateway

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP server bounds. A gateway holds a goroutine, a connection and up to
// one payload per request, so every way a client can hold them has an end.
const (
	// DefaultMaxInFlight caps concurrent HTTP requests per gateway; past it
	// a request is answered 503 at once instead of queueing unboundedly.
	DefaultMaxInFlight = 4096
	// DefaultReadHeaderTimeout bounds the request line and headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultBodyReadTimeout bounds reading a request body, measured from
	// when the handler starts reading it: a 6 MB payload needs only
	// ~200 KB/s, a client that trickles slower is cut off (408).
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle this long.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultMaxHeaderBytes bounds request headers: Lambda's largest header
	// is X-Amz-Client-Context (3,583 bytes), SigV4 adds a few hundred.
	DefaultMaxHeaderBytes = 64 << 10
	// invokeMargin is how much longer than the function's timeout the
	// gateway waits for a worker (cold-start phases included), so the
	// worker's own Sandbox.Timedout answer arrives first.
	invokeMargin = 5 * time.Second
	// WriteTimeout bounds writing a response, counted from the end of the
	// request headers: longer than the longest invocation (Lambda's 900 s
	// maximum timeout plus invokeMargin), with slack for a slow reader of
	// a 6 MB response. The records stream lifts it for itself.
	WriteTimeout = maxTimeout*time.Second + invokeMargin + 55*time.Second
	// DefaultRateFactor is Lambda's invocation rate quota: requests per
	// second per unit of account concurrency.
	DefaultRateFactor = 10
)

// inFlight counts the requests a gateway is serving.
type inFlight struct {
	max int64
	n   atomic.Int64
}

func (f *inFlight) acquire() bool {
	if f.n.Add(1) > f.max {
		f.n.Add(-1)
		return false
	}
	return true
}

func (f *inFlight) release() { f.n.Add(-1) }

// limitInFlight answers 503 ServiceException with Retry-After once max
// requests are in flight. Lambda has no overload answer of its own; 429
// would claim a concurrency or rate limit the caller did not reach (and a
// checker verifies every 429 against those), while ServiceException is the
// shape Lambda uses for a failure on its side and the SDKs retry 503 with
// backoff. Health and metrics stay reachable so an overloaded node can be
// observed.
func (g *Gateway) limitInFlight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
			next.ServeHTTP(w, r)
			return
		}
		if !g.inflight.acquire() {
			g.m.overloaded.Inc()
			writeError(w, errOverloaded())
			return
		}
		defer g.inflight.release()
		next.ServeHTTP(w, r)
	})
}

// readBody reads a request body of at most limit bytes within the body-read
// deadline. A body that does not arrive in time answers 408 and closes the
// connection (its unread rest cannot be skipped).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request, limit int64, tooLarge string) ([]byte, *lambdaError) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(g.cfg.BodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		// Reads past the body (the server's check for a closed
		// connection) must not trip the deadline while the handler runs.
		_ = rc.SetReadDeadline(time.Time{})
		return body, nil
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, errTooLarge(tooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		return nil, errBodyTimeout("the request body was not received within " + g.cfg.BodyReadTimeout.String())
	}
	return nil, errInvalidContent("could not read the request body: " + err.Error())
}

// rateLimiter enforces Lambda's invocation rate quota (10 x the account's
// concurrency limit, requests per second, warm or cold) with one token
// bucket per account. Each gateway holds 1/n of the account's rate, n
// being the gateways alive: no coordination per request, at the price that
// traffic skewed towards one gateway is throttled before the account as a
// whole reaches its rate.
type rateLimiter struct {
	now    func() time.Time
	factor float64
	mu     sync.Mutex
	b      map[string]*bucket
}

type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; capacity is one second's worth
	tokens float64
	last   time.Time
}

func newRateLimiter(factor float64, now func() time.Time) *rateLimiter {
	return &rateLimiter{now: now, factor: factor, b: map[string]*bucket{}}
}

// allow takes a token from the account's bucket. limit is the account's
// concurrency limit, gateways how many gateways share its rate. A limit of
// 0 or less is left to the concurrency check (nothing to pace).
func (l *rateLimiter) allow(account string, limit, gateways int) bool {
	if l == nil || l.factor <= 0 || limit <= 0 {
		return true
	}
	if gateways < 1 {
		gateways = 1
	}
	rate := l.factor * float64(limit) / float64(gateways)
	if rate < 1 {
		rate = 1
	}
	l.mu.Lock()
	b := l.b[account]
	if b == nil {
		b = &bucket{rate: rate, tokens: rate, last: l.now()}
		l.b[account] = b
	}
	l.mu.Unlock()
	now := l.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	// A changed limit or gateway count applies from now on; tokens never
	// exceed the new capacity.
	b.rate = rate
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * b.rate
		b.last = now
	}
	if b.tokens > b.rate {
		b.tokens = b.rate
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
