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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/placement"
)

// Placer is what the gateway needs from placement.
type Placer interface {
	Do(ctx context.Context, req placement.Request) (placement.Response, error)
	Read(ctx context.Context) (*placement.Snapshot, error)
	ReadLeader(ctx context.Context) (*placement.Snapshot, error)
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
}

// Gateway is a running gateway.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	nc    *nats.Conn
	pl    Placer
	cache *cache
	m     *metrics
	srv   *http.Server
	ln    net.Listener
	sub   *nats.Subscription
	done  chan struct{}
}

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
	g := &Gateway{cfg: cfg, log: cfg.Logger.With("node", cfg.ID, "role", "gateway"), nc: cfg.NATS, pl: cfg.Placement, cache: newCache(cfg.Placement), done: make(chan struct{})}
	g.m = newMetrics(cfg.Registry, cfg.ID)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	g.ln = ln
	g.sub, err = g.nc.Subscribe(placement.SubjectEvents, g.handleEvent)
	if err != nil {
		ln.Close()
		return nil, err
	}
	g.refresh()
	g.srv = &http.Server{Handler: g.routes(), ReadHeaderTimeout: 10 * time.Second}
	go g.srv.Serve(ln)
	go g.refreshLoop()
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
}

func (g *Gateway) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.cache.refresh(ctx); err != nil {
		g.log.Debug("cache refresh", "err", err)
	}
}

// handleEvent refreshes the cache after a control-plane change, refusing
// snapshots older than the change (a lagging follower's).
func (g *Gateway) handleEvent(m *nats.Msg) {
	var ev placement.Event
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	g.cache.mu.Lock()
	g.cache.observe(ev.Index)
	g.cache.mu.Unlock()
	go g.refreshFresh()
}

// refreshFresh retries a refresh a few times when the answering placement
// node lags behind a write this gateway already saw.
func (g *Gateway) refreshFresh() {
	t0 := time.Now()
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := g.cache.refreshSince(ctx, t0)
		cancel()
		if !errors.Is(err, errStale) {
			return
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
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
		}
	}
}

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", g.handleInvoke)
	mux.HandleFunc("POST /2015-03-31/functions", g.handleCreate)
	mux.HandleFunc("POST /2015-03-31/functions/", g.handleCreate)
	mux.HandleFunc("GET /2015-03-31/functions/", g.handleList)
	mux.HandleFunc("GET /2015-03-31/functions", g.handleList)
	mux.HandleFunc("GET /2015-03-31/functions/{name}", g.handleGet)
	mux.HandleFunc("DELETE /2015-03-31/functions/{name}", g.handleDelete)
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &lambdaError{http.StatusNotFound, "UnknownOperationException", "Unknown operation " + r.Method + " " + r.URL.Path, ""})
	})
	return mux
}

// account returns the caller's account. Development mode: every request is
// the default account.
func (g *Gateway) account(r *http.Request) string { return DefaultAccount }

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

func decodeJSON(r *http.Request, v any) *lambdaError {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return errInvalidContent("could not read request body: " + err.Error())
	}
	if len(body) > 1<<20 {
		return errTooLarge("request body is larger than 1 MiB")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errInvalidContent("Could not parse request body into json: " + err.Error())
	}
	return nil
}

// placementError turns a placement client error into a Lambda error.
func placementError(err error) *lambdaError {
	var pe *placement.Error
	if errors.As(err, &pe) {
		return &lambdaError{statusOf(pe.Type), pe.Type, pe.Message, ""}
	}
	return errService(err.Error())
}
