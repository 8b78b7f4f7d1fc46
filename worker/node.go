// Package worker hosts sandbox pools: it runs invocations in warm sandboxes
// or cold-starts granted ones, evicts idle sandboxes after their keep-alive,
// meters every invocation and answers placement's reclaim requests.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/coldstart-dev/coldstart/internal/recordstream"
	"github.com/coldstart-dev/coldstart/wire"
	"github.com/coldstart-dev/coldstart/worker/pool"
	"github.com/coldstart-dev/coldstart/worker/process"
)

// Placement is what a worker asks of the placement service: its own
// requests (wire.OpRenew, wire.OpRelease, wire.OpReconcile) on its own
// wire.WorkerOpSubject. placement.Client implements it; a missing leader
// is reported as wire.ErrNoLeader.
type Placement interface {
	WorkerOp(ctx context.Context, worker, op string, req wire.Request) (wire.Response, error)
}

// Config configures a worker.
type Config struct {
	ID        string
	NATS      *nats.Conn
	Placement Placement
	Capacity  int           // sandbox slots (0: unlimited)
	MemoryMB  int           // memory for sandboxes (0: unlimited)
	KeepAlive time.Duration // default keep-alive TTL of idle sandboxes
	Reuse     pool.Reuse
	// ReconcileEvery is how often the worker reports its sandboxes to
	// placement (releases that failed are retried then too).
	ReconcileEvery time.Duration
	// TimeScale divides every modelled delay (cold-start phases, handler
	// durations) and the keep-alive; 1 is real time.
	TimeScale float64
	// RenewEvery is how often the worker renews its lease (see lease.go);
	// 0 means wire.RenewEvery(wire.DefaultLeaseTTL).
	RenewEvery time.Duration
	// GrantKey, when set, is the key placement signs grants with: a cold
	// start without a valid grant token is refused.
	GrantKey []byte
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// LogInvocations prints START/END/REPORT lines to Logger.
	LogInvocations bool
	// Code unpacks code bundles (codestore.Cache); nil: synthetic
	// functions only.
	Code CodeSource
	// ScratchDir holds the sandboxes' scratch directories (default under
	// the system temp dir).
	ScratchDir string
	// Logs receives every function log line (logstream.Publisher).
	Logs func(LogLine)
	// BootDelay is an emulated microVM boot added to every process
	// sandbox's creation.
	BootDelay time.Duration
	// Redis holds the platform's idempotency records (nil: functions with
	// idempotency on are refused, fail closed).
	Redis redis.UniversalClient
}

// Node is a running worker.
type Node struct {
	cfg   Config
	log   *slog.Logger
	nc    *nats.Conn
	specs specCache
	m     *metrics

	mu       sync.Mutex
	pool     *pool.Pool
	warmSubs map[pool.Key]*nats.Subscription
	dropping map[string]bool // sandboxes to drop when their invocation ends
	pending  []string        // releases not yet committed by placement
	inflight int
	rnd      *rand.Rand

	lease     lease
	renewNow  chan struct{}
	running   map[string]chan struct{} // busy sandbox id -> closed to fence its invocation
	idleDirty bool                     // the idle set changed since the last full report
	idleCount map[pool.Key]int         // idle sandboxes per key, as last reported
	unsubAt   map[pool.Key]*time.Timer // pending warm unsubscriptions
	records   *recordstream.Publisher
	procs     map[string]*procState   // process sandboxes by id
	prewarms  map[string]*prewarmCall // provisioned inits in progress, by sandbox id

	subs   []*nats.Subscription
	wake   chan struct{}
	done   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// Start subscribes the worker's subjects and starts its keep-alive and
// reconcile loops.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 10 * time.Minute
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 2 * time.Second
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.RenewEvery == 0 {
		cfg.RenewEvery = wire.RenewEvery(wire.DefaultLeaseTTL)
	}
	n := &Node{
		cfg: cfg,
		log: cfg.Logger.With("node", cfg.ID, "role", "worker"),
		nc:  cfg.NATS,
		// Keep-alive is a platform delay too: --time-scale compresses it.
		pool:      pool.New(pool.Config{Reuse: cfg.Reuse, TTL: time.Duration(float64(cfg.KeepAlive) / cfg.TimeScale)}),
		warmSubs:  map[pool.Key]*nats.Subscription{},
		dropping:  map[string]bool{},
		running:   map[string]chan struct{}{},
		prewarms:  map[string]*prewarmCall{},
		idleCount: map[pool.Key]int{},
		unsubAt:   map[pool.Key]*time.Timer{},
		procs:     map[string]*procState{},
		rnd:       newRand(),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	n.specs.m = map[string]*wire.Spec{}
	n.records = recordstream.NewPublisher(n.nc)
	n.m = newMetrics(cfg.Registry, cfg.ID)
	n.registerPoolMetrics(cfg.Registry)
	for subj, h := range map[string]nats.MsgHandler{
		wire.InvokeSubject(cfg.ID):                     n.handleCold,
		wire.WorkerSubject(cfg.ID, wire.WorkerRetire):  n.handleRetire,
		wire.WorkerSubject(cfg.ID, wire.WorkerStats):   n.handleStats,
		wire.WorkerSubject(cfg.ID, wire.WorkerDrop):    n.handleDrop,
		wire.WorkerSubject(cfg.ID, wire.WorkerPrewarm): n.handlePrewarm,

		wire.SubjectEvents: n.handleEvent,
	} {
		s, err := n.nc.Subscribe(subj, h)
		if err != nil {
			n.Stop()
			return nil, err
		}
		s.SetPendingLimits(pendingMsgs, pendingBytes)
		n.subs = append(n.subs, s)
	}
	n.wg.Add(5)
	go n.expireLoop()
	go n.reconcileLoop()
	go n.renewLoop()
	go n.watchdogLoop()
	go n.idleReportLoop()
	return n, nil
}

// ID is the worker id.
func (n *Node) ID() string { return n.cfg.ID }

// Stop unsubscribes and stops the loops; running invocations finish but
// their replies may be lost (as in a crash, when the connection is closed).
func (n *Node) Stop() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, s := range n.warmSubs {
		s.Unsubscribe()
	}
	for _, t := range n.unsubAt {
		t.Stop()
	}
	n.warmSubs = map[pool.Key]*nats.Subscription{}
	n.mu.Unlock()
	for _, s := range n.subs {
		s.Unsubscribe()
	}
	close(n.done)
	n.wg.Wait()
	n.records.Stop()
	n.mu.Lock()
	ids := make([]string, 0, len(n.procs))
	for id := range n.procs {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.closeProc(id, "SPINDOWN")
	}
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x636f6c64)) }

func (n *Node) now() time.Duration { return time.Duration(time.Now().UnixNano()) }

// scaled turns a modelled delay into wall time.
func (n *Node) scaled(d time.Duration) time.Duration {
	if n.cfg.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / n.cfg.TimeScale)
}

// updateWarmSub keeps the worker subscribed to k's warm subject while it
// has an idle sandbox of k, so a gateway's request reaches an idle sandbox
// anywhere or gets "no responders". Losing the last idle sandbox only
// schedules the unsubscription: a sandbox usually comes back within
// moments (the next request of a steady client), and dropping and
// re-creating the subscription on every invocation cost more than the
// rare "busy" answer it saves. Called with n.mu held.
func (n *Node) updateWarmSub(k pool.Key) {
	if n.closed {
		return
	}
	idle, total := n.pool.Counts(k)
	n.noteIdleLocked(k, idle)
	sub := n.warmSubs[k]
	switch {
	case total == 0 && sub != nil:
		// Nothing of k left to come back: stop at once.
		if t := n.unsubAt[k]; t != nil {
			t.Stop()
			delete(n.unsubAt, k)
		}
		sub.Drain()
		delete(n.warmSubs, k)
	case idle > 0 && sub == nil:
		s, err := n.nc.QueueSubscribe(warmSubject(k), wire.QueueWarm, n.handleWarm)
		if err != nil {
			n.log.Error("warm subscribe", "err", err)
			return
		}
		s.SetPendingLimits(pendingMsgs, pendingBytes)
		n.warmSubs[k] = s
	case idle > 0:
		if t := n.unsubAt[k]; t != nil {
			t.Stop()
			delete(n.unsubAt, k)
		}
	case idle == 0 && sub != nil && n.unsubAt[k] == nil:
		n.unsubAt[k] = time.AfterFunc(warmLinger, func() { n.dropWarmSub(k, sub) })
	}
}

// warmLinger is how long a warm subscription outlives the last idle sandbox.
const warmLinger = time.Millisecond

// endLinger drops a lingering warm subscription at once. Called with n.mu held.
func (n *Node) endLinger(k pool.Key) {
	t := n.unsubAt[k]
	sub := n.warmSubs[k]
	if t == nil || sub == nil {
		return
	}
	t.Stop()
	delete(n.unsubAt, k)
	sub.Drain()
	delete(n.warmSubs, k)
}

func (n *Node) dropWarmSub(k pool.Key, sub *nats.Subscription) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.unsubAt[k] == nil || n.warmSubs[k] != sub {
		return // cancelled, or superseded
	}
	delete(n.unsubAt, k)
	if idle, _ := n.pool.Counts(k); idle > 0 {
		return
	}
	// Drain, not Unsubscribe: requests the server routed here before it saw
	// the UNSUB still reach handleWarm and get an answer instead of
	// vanishing until the gateway's timeout.
	sub.Drain()
	delete(n.warmSubs, k)
}

// warmSubject is where the idle sandboxes of k are found.
func warmSubject(k pool.Key) string { return wire.WarmSubject(k.Account, k.Function, k.Version) }

func keyOf(h nats.Header) pool.Key {
	return pool.Key{Account: h.Get(wire.HdrAccount), Function: h.Get(wire.HdrFunction), Version: h.Get(wire.HdrVersion)}
}

// handleWarm runs an invocation on an idle sandbox of its key, or answers
// busy so the gateway tries elsewhere.
func (n *Node) handleWarm(m *nats.Msg) {
	received := time.Now()
	ok, gen := n.mayStart(received)
	if !ok {
		n.m.fenced.Inc()
		n.replyStatus(m, wire.StatusBusy, "", "")
		return
	}
	k := keyOf(m.Header)
	rev, _ := strconv.ParseUint(m.Header.Get(wire.HdrRev), 10, 64)
	n.mu.Lock()
	var sb *pool.Sandbox
	for sb = n.pool.Acquire(k); sb != nil; sb = n.pool.Acquire(k) {
		if specOf(sb).Revision == rev {
			break
		}
		// A sandbox of an earlier incarnation of the function: retire it.
		n.pool.Remove(sb)
		n.pending = append(n.pending, sb.ID)
		n.kick()
	}
	var fc chan struct{}
	if sb != nil {
		n.inflight++
		fc = make(chan struct{})
		n.running[sb.ID] = fc
	}
	n.updateWarmSub(k)
	if sb == nil {
		// Asked while lingering with nothing idle: stop lingering now, so
		// the gateway's next attempt goes to a worker that has one.
		n.endLinger(k)
	}
	n.mu.Unlock()
	if sb == nil {
		n.replyStatus(m, wire.StatusBusy, "", "")
		return
	}
	go n.run(m, sb, specOf(sb), false, received, gen, fc)
}

// specOf is the Spec a sandbox was created with.
func specOf(sb *pool.Sandbox) *wire.Spec { return sb.Value.(*wire.Spec) }

// handleCold creates the sandbox placement granted and runs the invocation
// in it.
func (n *Node) handleCold(m *nats.Msg) {
	received := time.Now()
	k := keyOf(m.Header)
	id := m.Header.Get(wire.HdrSandbox)
	spec, err := n.specs.get(m.Header.Get(wire.HdrSpec))
	if err != nil || id == "" {
		msg := "cold invoke without a sandbox id"
		if err != nil {
			msg = err.Error()
		}
		n.replyStatus(m, wire.StatusError, "InvalidRequestContentException", msg)
		return
	}
	ok, gen := n.mayStart(received)
	if !ok {
		n.m.fenced.Inc()
		// Busy, like a full warm sandbox: the gateway gives the grant
		// back and places the invocation elsewhere.
		n.replyStatus(m, wire.StatusBusy, "ServiceException", "worker "+n.cfg.ID+" holds no valid lease from placement; the grant is void")
		return
	}
	if err := n.checkGrant(m.Header, id, k); err != nil {
		var stale *staleGrantError
		if errors.As(err, &stale) {
			n.replyStatus(m, wire.StatusBusy, "ServiceException", err.Error())
			return
		}
		n.replyStatus(m, wire.StatusError, "AccessDeniedException", err.Error())
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	if n.pool.Get(id) != nil {
		n.mu.Unlock()
		n.replyStatus(m, wire.StatusError, "ServiceException", "sandbox "+id+" already exists")
		return
	}
	sb := n.pool.Add(id, k, n.now(), n.scaled(spec.KeepAlive))
	sb.Value = spec
	n.inflight++
	fc := make(chan struct{})
	n.running[id] = fc
	n.mu.Unlock()
	go n.run(m, sb, spec, true, received, gen, fc)
}

// finish returns a sandbox to the pool after an invocation (or drops it
// when it must be reset, or was marked to go: function deleted, limit
// lowered, unknown to placement).
func (n *Node) finish(sb *pool.Sandbox, reset bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.inflight--
	delete(n.running, sb.ID)
	if reset || n.dropping[sb.ID] || n.closed {
		delete(n.dropping, sb.ID)
		if n.pool.Remove(sb) {
			n.pending = append(n.pending, sb.ID)
			n.kick()
		}
		return
	}
	n.pool.Release(sb, n.now())
	n.updateWarmSub(sb.Key)
	n.kick()
}

// kick wakes the expiry loop (a new idle sandbox may expire first).
func (n *Node) kick() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Node) replyStatus(m *nats.Msg, status, etype, msg string) {
	r := nats.NewMsg(m.Reply)
	r.Header.Set(wire.HdrStatus, status)
	r.Header.Set(wire.HdrWorker, n.cfg.ID)
	if etype != "" {
		r.Header.Set(wire.HdrErrorType, etype)
		r.Header.Set(wire.HdrError, msg)
	}
	_ = m.RespondMsg(r)
}

// lruIdle is this worker's least recently used idle sandbox in q's scope.
// Called with n.mu held.
func (n *Node) lruIdle(q wire.IdleQuery) *pool.Sandbox {
	reserved := make(map[string]bool, len(q.Reserved))
	for _, f := range q.Reserved {
		reserved[f] = true
	}
	return n.pool.LeastRecentlyUsed(func(k pool.Key) bool {
		// Never the requester's own function and version: placement sends
		// such a request back to the warm path instead.
		if q.Version != "" && k.Function == q.Function && k.Version == q.Version {
			return false
		}
		return inScope(k, q, reserved)
	})
}

// handleRetire removes an idle sandbox so that placement can give its slot
// to another function. It never retires a busy one.
func (n *Node) handleRetire(m *nats.Msg) {
	var r wire.RetireRequest
	var a wire.RetireAnswer
	if json.Unmarshal(m.Data, &r) == nil {
		n.mu.Lock()
		sb := n.pool.Get(r.ID)
		if sb == nil || sb.Busy {
			sb = n.lruIdle(r.Query)
		}
		if sb != nil && !sb.Busy && n.pool.Remove(sb) {
			a = wire.RetireAnswer{OK: true, ID: sb.ID}
			n.updateWarmSub(sb.Key)
			n.m.reclaimed.Inc()
			// Placement releases the victim in the command that grants in
			// its place. If that command never commits (the leader is
			// deposed meanwhile), the release comes from here: a release
			// of an id already gone changes nothing.
			id := sb.ID
			time.AfterFunc(retiredRelease, func() {
				n.mu.Lock()
				n.pending = append(n.pending, id)
				n.mu.Unlock()
				n.kick()
			})
		}
		n.mu.Unlock()
	}
	n.respondJSON(m, a)
}

// retiredRelease is how long a retired victim waits for the grant that
// replaces it before the worker releases it itself: longer than the
// leader waits for a retire answer (400 ms) plus a commit, far shorter
// than a reconcile. Releasing it early is safe (it runs nothing, and the
// grant that names it admits only if there is room), but an answer lost
// to a timeout left its slot counted, unused, for this long: 2 s of that
// under overload showed as 429s below the limit.
const retiredRelease = time.Second

// Stats returns the worker's pool counts.
func (n *Node) Stats() wire.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := wire.Stats{Worker: n.cfg.ID, Idle: n.pool.Idle(), Busy: n.pool.Busy(), InFlight: n.inflight, Processes: len(n.procs), Limits: process.LimitsMode()}
	n.pool.Keys(func(k pool.Key, idle, total int) {
		s.Keys = append(s.Keys, wire.KeyStats{Account: k.Account, Function: k.Function, Version: k.Version, Idle: idle, Total: total})
	})
	return s
}

func (n *Node) handleStats(m *nats.Msg) { n.respondJSON(m, n.Stats()) }

// handleDrop removes sandboxes above a lowered limit: idle ones now, busy
// ones when their invocation ends; placement releases them either way.
func (n *Node) handleDrop(m *nats.Msg) {
	var r wire.DropRequest
	if json.Unmarshal(m.Data, &r) != nil {
		n.respondJSON(m, wire.RetireAnswer{})
		return
	}
	n.mu.Lock()
	draining := 0
	for _, id := range r.IDs {
		sb := n.pool.Get(id)
		switch {
		case sb == nil:
		case sb.Busy:
			n.dropping[id] = true
			draining++
		default:
			n.pool.Remove(sb)
			n.pending = append(n.pending, id)
			n.updateWarmSub(sb.Key)
		}
	}
	n.mu.Unlock()
	n.kick()
	n.respondJSON(m, wire.RetireAnswer{OK: true, Draining: draining})
}

// handleEvent drops the sandboxes of a deleted function: idle ones now,
// busy ones when they finish.
func (n *Node) handleEvent(m *nats.Msg) {
	var ev wire.Event
	if json.Unmarshal(m.Data, &ev) != nil {
		return
	}
	if ev.Kind == wire.EventDeploy {
		n.handleDeploy(ev)
		return
	}
	if ev.Kind != wire.EventDelete {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var drop []*pool.Sandbox
	n.pool.Each(func(sb *pool.Sandbox) {
		switch {
		case sb.Key.Account != ev.Account || sb.Key.Function != ev.Function:
		case sb.Busy:
			n.dropping[sb.ID] = true
		default:
			drop = append(drop, sb)
		}
	})
	for _, sb := range drop {
		n.pool.Remove(sb)
		n.pending = append(n.pending, sb.ID)
		n.updateWarmSub(sb.Key)
	}
	n.kick()
}

func (n *Node) respondJSON(m *nats.Msg, v any) {
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}

// expireLoop evicts idle sandboxes whose keep-alive ran out and releases
// their capacity through placement.
func (n *Node) expireLoop() {
	defer n.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		n.mu.Lock()
		var expired []string
		n.pool.Expire(n.now(), func(sb *pool.Sandbox) {
			expired = append(expired, sb.ID)
			n.updateWarmSub(sb.Key)
		})
		n.m.evicted.Add(float64(len(expired)))
		n.pending = append(n.pending, expired...)
		pending := n.pending
		n.pending = nil
		next, ok := n.pool.NextExpiry()
		n.mu.Unlock()
		if len(pending) > 0 {
			n.releaseOrRequeue(pending)
		}
		n.sweepProcs()
		wait := time.Hour
		if ok {
			wait = time.Duration(next - n.now())
			if wait < 0 {
				wait = 0
			}
		}
		t.Reset(wait)
		select {
		case <-n.done:
			return
		case <-n.wake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
	}
}

func (n *Node) releaseOrRequeue(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := n.cfg.Placement.WorkerOp(ctx, n.cfg.ID, wire.OpRelease, wire.Request{Op: wire.OpRelease, Release: ids, Incarnation: n.lease.incarnation()}); err != nil {
		// Placement unreachable: keep the capacity counted (safe) and retry
		// on the next reconcile.
		n.mu.Lock()
		n.pending = append(n.pending, ids...)
		n.mu.Unlock()
	}
}

// reconcileLoop reports the sandboxes this worker holds; placement releases
// grants that never became sandboxes and names sandboxes it does not know,
// which the worker drops.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		n.reconcileOnce()
	}
}

func (n *Node) reconcileOnce() {
	n.mu.Lock()
	present := make([]string, 0, n.pool.Len())
	n.pool.Each(func(sb *pool.Sandbox) { present = append(present, sb.ID) })
	pending := n.pending
	n.pending = nil
	n.mu.Unlock()
	if len(pending) > 0 {
		n.releaseOrRequeue(pending)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	inc := n.lease.incarnation()
	if inc == 0 {
		return
	}
	resp, err := n.cfg.Placement.WorkerOp(ctx, n.cfg.ID, wire.OpReconcile, wire.Request{Op: wire.OpReconcile, Reconcile: &wire.ReconcileWorker{Worker: n.cfg.ID, Incarnation: inc, Present: present}})
	if err != nil || resp.Grant == nil || resp.Grant.Err != "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range resp.Grant.Dropped {
		sb := n.pool.Get(id)
		if sb == nil {
			continue
		}
		if sb.Busy {
			// It is running; it is dropped when it finishes.
			n.dropping[id] = true
			continue
		}
		n.pool.Remove(sb)
		n.updateWarmSub(sb.Key)
		n.log.Warn("dropped a sandbox placement does not know", "sandbox", id)
	}
}

type specCache struct {
	mu sync.RWMutex
	m  map[string]*wire.Spec
}

// get decodes a spec header, caching by its text: the same function sends
// the same bytes on every invocation.
func (c *specCache) get(raw string) (*wire.Spec, error) {
	c.mu.RLock()
	s := c.m[raw]
	c.mu.RUnlock()
	if s != nil {
		return s, nil
	}
	var sp wire.Spec
	if err := json.Unmarshal([]byte(raw), &sp); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) > 4096 {
		c.m = map[string]*wire.Spec{}
	}
	c.m[raw] = &sp
	c.mu.Unlock()
	return &sp, nil
}
