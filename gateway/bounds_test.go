package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/natsutil"
	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/wire"
)

// livePlacer is a placement whose snapshots the test changes: leader is
// what ReadLeader returns, follower what Read returns (leader when nil).
// do answers writes (default: no leader).
type livePlacer struct {
	mu       sync.Mutex
	leader   *wire.Snapshot
	follower *wire.Snapshot
	do       func(ctx context.Context, req wire.Request) (wire.Response, error)
	reads    int
}

func (p *livePlacer) Do(ctx context.Context, req wire.Request) (wire.Response, error) {
	p.mu.Lock()
	do := p.do
	p.mu.Unlock()
	if do == nil {
		return wire.Response{}, errors.Join(wire.ErrUnavailable, errors.New("fake: no leader"))
	}
	return do(ctx, req)
}

func (p *livePlacer) GatewayOp(ctx context.Context, gw, op string, req wire.Request) (wire.Response, error) {
	return p.Do(ctx, req)
}

func (p *livePlacer) ReadNode(ctx context.Context, id string) (*wire.Snapshot, error) {
	return p.Read(ctx)
}

func (p *livePlacer) Read(ctx context.Context) (*wire.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if p.follower != nil {
		return p.follower, nil
	}
	return p.leader, nil
}

func (p *livePlacer) ReadLeader(ctx context.Context) (*wire.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	return p.leader, nil
}

func (p *livePlacer) set(leader, follower *wire.Snapshot) {
	p.mu.Lock()
	p.leader, p.follower = leader, follower
	p.mu.Unlock()
}

func (p *livePlacer) readCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testFunction(name string, rev uint64) wire.Function {
	syn, _ := json.Marshal(api.SyntheticConfig{Duration: "1ms"})
	return wire.Function{Account: DefaultAccount, Name: name, Runtime: "synthetic", MemoryMB: 128, TimeoutMs: 3000, Synthetic: syn, Revision: rev, Created: rev}
}

// startGateway starts a gateway on an embedded NATS server with cfg's
// placement and bounds; it returns the gateway and a test connection.
func startGateway(t *testing.T, cfg Config) (*Gateway, *nats.Conn) {
	t.Helper()
	ns, err := natsutil.StartServer(natsutil.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	connect := func(name string) *nats.Conn {
		nc, err := natsutil.Connect(natsutil.URL(ns), name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	cfg.ID, cfg.Listen, cfg.NATS = "g", "127.0.0.1:0", connect("gateway")
	g, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g, connect("test")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func TestInFlightCapAnswers503WhenFull(t *testing.T) {
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	pl := &livePlacer{leader: &wire.Snapshot{Index: 1}}
	pl.do = func(ctx context.Context, req wire.Request) (wire.Response, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return wire.Response{Function: req.Function, Index: 2}, nil
		case <-ctx.Done():
			return wire.Response{}, ctx.Err()
		}
	}
	g, _ := startGateway(t, Config{Placement: pl, MaxInFlight: 2})
	create := func(name string) (*http.Response, api.ErrorBody) {
		return call(t, http.MethodPost, g.URL()+"/2015-03-31/functions", nil, strings.NewReader(`{"FunctionName":"`+name+`"}`))
	}
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, _ := create("blocked" + string(rune('a'+i)))
			codes[i] = resp.StatusCode
		}(i)
	}
	for i := 0; i < 2; i++ {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the blocking requests never reached placement")
		}
	}
	// Both slots are held: the next request is refused while they block.
	resp, eb := create("third")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(api.HeaderErrorType) != "ServiceException" || resp.Header.Get("Retry-After") == "" || eb.Text() != "gateway overloaded, retry" || eb.Type != "Service" {
		t.Fatalf("past the cap: %d %v %+v", resp.StatusCode, resp.Header, eb)
	}
	if resp, _ := call(t, http.MethodGet, g.URL()+"/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz under overload: %d", resp.StatusCode)
	}
	select {
	case <-entered:
		t.Fatal("a request past the cap reached placement")
	default:
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusCreated {
			t.Fatalf("blocked request %d: %d", i, c)
		}
	}
	waitFor(t, "in-flight back to 0", 5*time.Second, func() bool { return g.inflight.n.Load() == 0 })
	if resp, _ := create("after"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("after the blocked requests finished: %d", resp.StatusCode)
	}
}

func TestTricklingBodyIsCutOff(t *testing.T) {
	pl := &livePlacer{leader: &wire.Snapshot{Index: 1, Functions: []wire.Function{testFunction("f", 1)}}}
	g, _ := startGateway(t, Config{Placement: pl, BodyReadTimeout: 200 * time.Millisecond})
	for _, path := range []string{"/2015-03-31/functions/f/invocations", "/2015-03-31/functions"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := conn.Write([]byte("POST " + path + " HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\n{")); err != nil {
				t.Fatal(err)
			}
			// One byte every 20 ms, far below what the deadline allows,
			// until the gateway answers.
			stop := make(chan struct{})
			go func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			defer close(stop)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var eb api.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(api.HeaderErrorType) != "RequestTimeoutException" || eb.Text() == "" {
				t.Fatalf("trickled body: %d %q %+v", resp.StatusCode, resp.Header.Get(api.HeaderErrorType), eb)
			}
			// The connection is closed, not kept for the unread rest.
			if _, err := br.ReadByte(); err == nil {
				t.Fatal("connection still open after the body timeout")
			}
			waitFor(t, "in-flight back to 0", 5*time.Second, func() bool { return g.inflight.n.Load() == 0 })
		})
	}
}

func TestServerBounds(t *testing.T) {
	g := startTestGateway(t)
	s := g.srv
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 1<<20 {
		t.Fatalf("unbounded server: %+v", s)
	}
	if s.WriteTimeout <= maxTimeout*time.Second+invokeMargin {
		t.Fatalf("WriteTimeout %s cuts off a %d s function", s.WriteTimeout, maxTimeout)
	}
	resp, _ := call(t, http.MethodGet, g.URL()+"/healthz", map[string]string{"X-Big": strings.Repeat("a", 2*DefaultMaxHeaderBytes)}, nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d", resp.StatusCode)
	}
}

// rateGateway serves function f to an account with concurrency limit 2
// (20 invocations/s on one gateway) on a frozen clock; placement answers
// every cold start at once with "no capacity" (500), so only the rate
// limit answers 429.
func rateGateway(t *testing.T) (*Gateway, *nats.Conn, *fakeClock) {
	clk := newFakeClock()
	pl := &livePlacer{leader: &wire.Snapshot{Index: 1, Accounts: []wire.Account{{ID: DefaultAccount, Limit: 2}}, Functions: []wire.Function{testFunction("f", 1)}}}
	pl.do = func(ctx context.Context, req wire.Request) (wire.Response, error) {
		return wire.Response{Grant: &wire.Grant{Err: "no capacity"}}, nil
	}
	g, nc := startGateway(t, Config{Placement: pl, Gateways: 1, Now: clk.Now})
	return g, nc, clk
}

func TestRateLimitThrottlesPast10xLimit(t *testing.T) {
	g, _, clk := rateGateway(t)
	url := g.URL() + "/2015-03-31/functions/f/invocations"
	invoke := func() (*http.Response, api.ErrorBody) {
		return call(t, http.MethodPost, url, nil, strings.NewReader(`{}`))
	}
	for i := 0; i < 20; i++ {
		if resp, eb := invoke(); resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("request %d of 20 in one second throttled at limit 2: %+v", i+1, eb)
		}
	}
	resp, eb := invoke()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(api.HeaderErrorType) != "TooManyRequestsException" || eb.Reason != "FunctionInvocationRateLimitExceeded" || resp.Header.Get("Retry-After") == "" || eb.Text() != "Rate Exceeded." {
		t.Fatalf("21st request in one second: %d %v %+v", resp.StatusCode, resp.Header, eb)
	}
	// 100 ms refill two tokens at 20/s.
	clk.Advance(100 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if resp, eb := invoke(); resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("request %d after the refill throttled: %+v", i+1, eb)
		}
	}
	if resp, _ := invoke(); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third request after a 2-token refill: %d", resp.StatusCode)
	}
	// DryRun invokes nothing and is not paced.
	if resp, _ := call(t, http.MethodPost, url, map[string]string{api.HeaderInvocationType: "DryRun"}, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DryRun with an empty bucket: %d", resp.StatusCode)
	}
}

func TestRateLimiterSharesTheRateAcrossGateways(t *testing.T) {
	clk := newFakeClock()
	l := newRateLimiter(DefaultRateFactor, clk.Now)
	// Limit 10 over 4 gateways: 25 per second here.
	n := 0
	for l.allow("a", 10, 4) {
		n++
	}
	if n != 25 {
		t.Fatalf("burst %d, want 25", n)
	}
	clk.Advance(time.Second)
	n = 0
	for l.allow("a", 10, 4) {
		n++
	}
	if n != 25 {
		t.Fatalf("after one second %d, want 25", n)
	}
	if !l.allow("b", 10, 4) {
		t.Fatal("accounts share a bucket")
	}
	if !newRateLimiter(-1, clk.Now).allow("a", 1, 1) || !l.allow("c", 0, 1) {
		t.Fatal("disabled limiter or zero limit throttled")
	}
}

// nextRecord waits for a records message and returns its throttled records.
func nextRecord(t *testing.T, ch chan *nats.Msg) api.Record {
	t.Helper()
	select {
	case m := <-ch:
		recs := wire.SplitRecords(m.Data)
		if len(recs) == 0 {
			t.Fatalf("records message without records: %q", m.Data)
		}
		return recs[0]
	case <-time.After(10 * time.Second):
		t.Fatal("no throttle record published")
	}
	return api.Record{}
}

func TestThrottlePublishesRecord(t *testing.T) {
	g, nc, _ := rateGateway(t)
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(wire.SubjectRecords, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	url := g.URL() + "/2015-03-31/functions/f/invocations"
	for i := 0; i < 20; i++ {
		call(t, http.MethodPost, url, nil, strings.NewReader(`{}`))
	}
	select {
	case m := <-ch:
		t.Fatalf("record published without a throttle: %s", m.Data)
	default:
	}
	before := time.Now().UnixNano()
	resp, _ := call(t, http.MethodPost, url, nil, strings.NewReader(`{}`))
	after := time.Now().UnixNano()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := nextRecord(t, ch)
	want := api.Record{RequestID: resp.Header.Get(api.HeaderRequestID), Account: DefaultAccount, Function: "f", Version: LatestVersion, Outcome: api.OutcomeThrottled, Reason: string(quota.ReasonFunctionRate), Gateway: "g", ReceivedNs: r.ReceivedNs}
	if r != want || r.RequestID == "" {
		t.Fatalf("record %+v, want %+v", r, want)
	}
	if r.ReceivedNs < before || r.ReceivedNs > after {
		t.Fatalf("ReceivedNs %d outside the request [%d, %d]", r.ReceivedNs, before, after)
	}
}

func TestReservedZeroThrottlePublishesRecord(t *testing.T) {
	zero := 0
	f := testFunction("zero", 1)
	f.Reserved = &zero
	pl := &livePlacer{leader: &wire.Snapshot{Index: 1, Functions: []wire.Function{f}}}
	g, nc := startGateway(t, Config{Placement: pl})
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(wire.SubjectRecords, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	resp, eb := call(t, http.MethodPost, g.URL()+"/2015-03-31/functions/zero/invocations", nil, strings.NewReader(`{}`))
	if resp.StatusCode != http.StatusTooManyRequests || eb.Reason != string(quota.ReasonReservedConcurrency) {
		t.Fatalf("reserved 0: %d %+v", resp.StatusCode, eb)
	}
	r := nextRecord(t, ch)
	if r.Outcome != api.OutcomeThrottled || r.Reason != string(quota.ReasonReservedConcurrency) || r.Function != "zero" || r.Gateway != "g" || r.RequestID != resp.Header.Get(api.HeaderRequestID) {
		t.Fatalf("record %+v", r)
	}
}

func TestSubscriptionsAreBounded(t *testing.T) {
	g := startTestGateway(t)
	msgs, bytes, err := g.sub.PendingLimits()
	if err != nil || msgs <= 0 || bytes <= 0 {
		t.Fatalf("events subscription pending limits %d msgs %d bytes (%v)", msgs, bytes, err)
	}
}
