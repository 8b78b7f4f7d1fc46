// Package gateway answers the AWS Lambda HTTP API: it routes invocations over
// NATS to an idle warm sandbox anywhere in the cluster, asks placement for a
// new sandbox when there is none, and translates every outcome into Lambda's
// status codes, headers and error shapes.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/wire"
)

// Placer is what the gateway needs from placement; placement.Client
// implements it.
type Placer interface {
	Do(ctx context.Context, req wire.Request) (wire.Response, error)
	// GatewayOp sends this gateway's own requests (cold-start grants and
	// their cancels) on its subject, so placement knows who asked.
	GatewayOp(ctx context.Context, gateway, op string, req wire.Request) (wire.Response, error)
	Read(ctx context.Context) (*wire.Snapshot, error)
	ReadLeader(ctx context.Context) (*wire.Snapshot, error)
	// ReadNode reads one placement node's own snapshot (status).
	ReadNode(ctx context.Context, id string) (*wire.Snapshot, error)
}

// Members lists the cluster's nodes for the status page.
type Members interface {
	Nodes() []api.Node
}

// Config configures a gateway.
type Config struct {
	ID        string
	Listen    string // host:port
	NATS      *nats.Conn
	Placement Placer
	Members   Members
	// WarmAttempts is how many workers may answer "busy" before the
	// gateway asks placement for a new sandbox.
	WarmAttempts int
	Registry     *prometheus.Registry
	Gatherer     prometheus.Gatherer // what /metrics serves; default Registry
	Logger       *slog.Logger

	// MaxInFlight caps concurrent HTTP requests; past it requests are
	// answered 503 ServiceException at once (default DefaultMaxInFlight).
	MaxInFlight int
	// HTTP server bounds; zero means the Default* constant of the same
	// name. WriteTimeout is fixed (it must outlast the longest function).
	ReadHeaderTimeout time.Duration
	BodyReadTimeout   time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// RateFactor is the invocation rate allowed per unit of account
	// concurrency, requests per second (default DefaultRateFactor, Lambda's
	// quota); negative disables the rate limit.
	RateFactor float64
	// Gateways is how many gateways share each account's rate; 0 counts
	// the alive gateways in Members (1 without Members).
	Gateways int
	// Now is the clock of the rate limiter and the cache's time bounds
	// (default time.Now).
	Now func() time.Time
	// Code stores function code bundles (codestore.Store); nil refuses
	// functions with code.
	Code CodeStore
	// StrictAuth refuses unsigned requests; otherwise they act as
	// DefaultAccount (development mode).
	StrictAuth bool
	// NoDefaultKey removes the built-in access key "test" (secret "test")
	// of DefaultAccount that local emulators' users expect.
	NoDefaultKey bool
	// TimeScale divides every platform delay of asynchronous invocations
	// (retry waits, backoff, maximum event age, ack wait); 0 or 1 is real
	// time.
	TimeScale float64
	// Dispatchers is how many events this gateway invokes at once
	// (default DefaultDispatchers); negative runs no dispatcher.
	Dispatchers int
	// AsyncReplicas is the JetStream replica count of the event streams.
	AsyncReplicas int
}

// Gateway is a running gateway.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	pl       Placer
	cache    *cache
	m        *metrics
	srv      *http.Server
	ln       net.Listener
	sub      *nats.Subscription
	subWatch dropWatch
	inflight inFlight
	rate     *rateLimiter
	gateways atomic.Int64            // gateways sharing each account's rate
	recs     *recordstream.Publisher // throttled records, for the checker
	// hint is the highest index an event announced since the event loop
	// last looked; kick wakes the loop.
	hint   atomic.Uint64
	kick   chan struct{}
	done   chan struct{}
	async  *async // nil: Event invocations are refused (no JetStream)
	faults faultPicker
	obs    *observer // timeline and sampled history (timeline_sample.go)
}

// Pending limits of the events subscription: events are a few hundred
// bytes and handled without blocking, so reaching these means the
// connection itself is starved; later events are dropped (and logged) and
// the periodic refresh catches up.
const (
	eventsPendingMsgs  = 4096
	eventsPendingBytes = 4 << 20
)

// Start listens and serves.
func Start(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.WarmAttempts == 0 {
		cfg.WarmAttempts = 5
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = cfg.Registry
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.RateFactor == 0 {
		cfg.RateFactor = DefaultRateFactor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger.With("node", cfg.ID, "role", "gateway"), nc: cfg.NATS, pl: cfg.Placement, cache: newCache(cfg.Placement, cfg.Now), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	g.inflight.max = int64(cfg.MaxInFlight)
	g.rate = newRateLimiter(cfg.RateFactor, cfg.Now)
	g.recs = recordstream.NewPublisher(cfg.NATS)
	g.m = newMetrics(cfg.Registry, cfg.ID)
	g.countGateways()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	g.ln = ln
	g.sub, err = g.nc.Subscribe(wire.SubjectEvents, g.handleEvent)
	if err == nil {
		err = g.sub.SetPendingLimits(eventsPendingMsgs, eventsPendingBytes)
	}
	if err != nil {
		if g.sub != nil {
			g.sub.Unsubscribe()
		}
		ln.Close()
		return nil, err
	}
	g.subWatch = dropWatch{sub: g.sub}
	g.refresh()
	g.obs = g.startObserver()
	g.srv = &http.Server{
		Handler:           g.limitInFlight(g.routes()),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// Handlers that read a body set their own deadline (readBody);
		// this one ends a body nobody reads, which the server drains
		// after the handler.
		ReadTimeout:    cfg.ReadHeaderTimeout + cfg.BodyReadTimeout,
		WriteTimeout:   WriteTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
	}
	if err := g.startAsync(); err != nil {
		// Synchronous invocations work without JetStream; Event ones are
		// refused with this reason.
		g.log.Warn("asynchronous invocations disabled", "err", err)
		g.async = nil
	}
	go g.srv.Serve(ln)
	go g.refreshLoop()
	go g.eventLoop()
	return g, nil
}

// Addr is the listening address; URL the base URL.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }
func (g *Gateway) URL() string  { return "http://" + g.Addr() }

// Stop shuts the HTTP server down.
func (g *Gateway) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	close(g.done)
	g.sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.srv.Shutdown(ctx)
	g.stopAsync()
	g.recs.Stop()
}

func (g *Gateway) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.cache.refresh(ctx); err != nil {
		g.log.Debug("cache refresh", "err", err)
	}
}

// handleEvent takes a control-plane change notice as a hint to refresh:
// the event loop reads the leader until the cache reaches the announced
// index, a few attempts at most. The notice itself changes nothing, so a
// bogus or foreign event costs a few reads, never a frozen cache.
func (g *Gateway) handleEvent(m *nats.Msg) {
	ev, ok := decodeEvent(m.Data)
	if !ok {
		return
	}
	for {
		cur := g.hint.Load()
		if ev.Index <= cur || g.hint.CompareAndSwap(cur, ev.Index) {
			break
		}
	}
	select {
	case g.kick <- struct{}{}:
	default: // a refresh is pending already; it reads the hint
	}
}

// maxEvent bounds an event message; placement's are a few hundred bytes.
const maxEvent = 64 << 10

// decodeEvent parses a placement event, rejecting what is not one.
func decodeEvent(data []byte) (wire.Event, bool) {
	var ev wire.Event
	if len(data) == 0 || len(data) > maxEvent || json.Unmarshal(data, &ev) != nil || ev.Kind == "" {
		return wire.Event{}, false
	}
	return ev, true
}

// eventLoop serves event hints one refresh at a time: an event storm costs
// at most one chain of reads in flight.
func (g *Gateway) eventLoop() {
	for {
		select {
		case <-g.done:
			return
		case <-g.kick:
			g.refreshFresh(g.hint.Swap(0))
		}
	}
}

// refreshFresh reads the leader (any node when there is none) until the
// cache holds a snapshot at index want or later, a few attempts at most: a
// placement node may lag a write this gateway heard of. want 0 asks for one
// successful refresh. Stale refusals count towards the cache's resync from
// the leader, so a cache that refuses every snapshot recovers here too.
func (g *Gateway) refreshFresh(want uint64) {
	for i := 0; i < 5; i++ {
		t0 := g.cache.now()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := g.cache.refreshSince(ctx, t0)
		cancel()
		switch {
		case err == nil:
			if _, _, idx := g.cache.position(); idx >= want {
				return
			}
		case !errors.Is(err, errStale):
			return
		}
		select {
		case <-g.done:
			return
		case <-time.After(time.Duration(i+1) * 5 * time.Millisecond):
		}
	}
}

func (g *Gateway) refreshLoop() {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
			g.refresh()
			g.countGateways()
			g.subWatch.check(g.log)
		}
	}
}

// countGateways sets how many gateways share each account's rate: the
// configured number, or the gateways membership shows alive (this one
// included, even before gossip lists it).
func (g *Gateway) countGateways() {
	n := g.cfg.Gateways
	if n <= 0 {
		n = 0
		if g.cfg.Members != nil {
			for _, m := range g.cfg.Members.Nodes() {
				if m.Role == "gateway" && m.State != "dead" {
					n++
				}
			}
		}
		if n < 1 {
			n = 1
		}
	}
	g.gateways.Store(int64(n))
}

// dropWatch logs the messages a subscription dropped as a slow consumer
// since the last check; dropping is the answer to a slow consumer, the
// node goes on.
type dropWatch struct {
	sub  *nats.Subscription
	last int
}

func (d *dropWatch) check(log *slog.Logger) {
	if d.sub == nil {
		return
	}
	n, err := d.sub.Dropped()
	if err != nil || n <= d.last {
		return
	}
	log.Warn("slow consumer: NATS messages dropped", "subject", d.sub.Subject, "dropped", n-d.last)
	d.last = n
}

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", g.observeInvoke(g.handleInvoke))
	mux.HandleFunc("POST /2015-03-31/functions", g.handleCreate)
	mux.HandleFunc("POST /2015-03-31/functions/{$}", g.handleCreate)
	mux.HandleFunc("GET /2015-03-31/functions/{$}", g.handleList)
	mux.HandleFunc("GET /2015-03-31/functions", g.handleList)
	mux.HandleFunc("GET /2015-03-31/functions/{name}", g.handleGet)
	mux.HandleFunc("DELETE /2015-03-31/functions/{name}", g.handleDelete)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/configuration", g.handleGetConfiguration)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/configuration", g.handleUpdateConfiguration)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/code", g.handleUpdateCode)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/versions", g.handlePublish)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/versions", g.handleListVersions)
	mux.HandleFunc("POST /2015-03-31/functions/{name}/aliases", g.handleCreateAlias)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/aliases", g.handleListAliases)
	mux.HandleFunc("GET /2015-03-31/functions/{name}/aliases/{alias}", g.handleGetAlias)
	mux.HandleFunc("PUT /2015-03-31/functions/{name}/aliases/{alias}", g.handleUpdateAlias)
	mux.HandleFunc("DELETE /2015-03-31/functions/{name}/aliases/{alias}", g.handleDeleteAlias)
	mux.HandleFunc("PUT /2019-09-30/functions/{name}/provisioned-concurrency", g.handlePutProvisioned)
	mux.HandleFunc("GET /2019-09-30/functions/{name}/provisioned-concurrency", g.handleGetProvisioned)
	mux.HandleFunc("DELETE /2019-09-30/functions/{name}/provisioned-concurrency", g.handleDeleteProvisioned)
	mux.HandleFunc("PUT /2019-09-25/functions/{name}/event-invoke-config", g.handlePutEventConfig)
	mux.HandleFunc("POST /2019-09-25/functions/{name}/event-invoke-config", g.handleUpdateEventConfig)
	mux.HandleFunc("GET /2019-09-25/functions/{name}/event-invoke-config", g.handleGetEventConfig)
	mux.HandleFunc("DELETE /2019-09-25/functions/{name}/event-invoke-config", g.handleDeleteEventConfig)
	mux.HandleFunc("GET /2019-09-25/functions/{name}/event-invoke-config/list", g.handleListEventConfigs)
	mux.HandleFunc("PUT "+api.PathFunctionOptions+"{name}/fault", g.handlePutFault)
	mux.HandleFunc("DELETE "+api.PathFunctionOptions+"{name}/fault", g.handleDeleteFault)
	mux.HandleFunc("PUT "+api.PathFunctionOptions+"{name}/idempotency", g.handlePutIdempotency)
	mux.HandleFunc("DELETE "+api.PathFunctionOptions+"{name}/idempotency", g.handleDeleteIdempotency)
	mux.HandleFunc("GET "+api.PathFunctionOptions+"{name}/options", g.handleGetOptions)
	mux.HandleFunc("GET "+api.PathDLQ, g.handleDLQList)
	mux.HandleFunc("GET "+api.PathDLQ+"/{id}", g.handleDLQShow)
	mux.HandleFunc("POST "+api.PathDLQ+"/redrive", g.handleDLQRedrive)
	mux.HandleFunc("POST "+api.PathAccounts, g.handleCreateAccount)
	mux.HandleFunc("GET "+api.PathAccounts+"/{id}", g.handleAccountKeys)
	mux.HandleFunc("POST "+api.PathAccounts+"/{id}/keys", g.handleAccountKeys)
	mux.HandleFunc("PUT /2017-10-31/functions/{name}/concurrency", g.handlePutConcurrency)
	mux.HandleFunc("DELETE /2017-10-31/functions/{name}/concurrency", g.handleDeleteConcurrency)
	mux.HandleFunc("GET /2019-09-30/functions/{name}/concurrency", g.handleGetConcurrency)
	mux.HandleFunc("GET /2016-08-19/account-settings/", g.handleAccountSettings)
	mux.HandleFunc("GET /2016-08-19/account-settings", g.handleAccountSettings)
	mux.HandleFunc("PUT "+api.PathAccountLimit, g.handleSetLimit)
	mux.HandleFunc("GET "+api.PathStatus, g.handleStatus)
	mux.HandleFunc("GET "+api.PathRecords, g.handleRecords)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /{$}", handleDashboard)
	mux.HandleFunc("GET /dashboard", handleDashboard)
	mux.Handle("GET /metrics", metricsHandler(g.cfg.Gatherer))
	g.obs.routes(mux)
	mux.HandleFunc("/", g.handleUnknown)
	return g.authenticate(mux)
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

func (g *Gateway) decodeJSON(w http.ResponseWriter, r *http.Request, v any) *lambdaError {
	body, lerr := g.readBody(w, r, 1<<20, "request body is larger than 1 MiB")
	if lerr != nil {
		return lerr
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalidContent("Could not parse request body into json: " + err.Error())
	}
	return nil
}

// placementError turns a placement client error into a Lambda error.
func placementError(err error) *lambdaError {
	var pe *wire.Error
	if errors.As(err, &pe) {
		return &lambdaError{statusOf(pe.Type), pe.Type, pe.Message, ""}
	}
	return errService(err.Error())
}
