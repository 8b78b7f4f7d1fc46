package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coldstart-dev/coldstart/gateway"
	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/check"
	"github.com/coldstart-dev/coldstart/internal/client"
	"github.com/coldstart-dev/coldstart/internal/drill"
	"github.com/coldstart-dev/coldstart/loadgen"
	"github.com/coldstart-dev/coldstart/placement"
)

// drillOptions is one `coldstart drill run`.
type drillOptions struct {
	spec     drill.Spec
	gateways []string
	admin    string
	data     string
	target   string
	answer   string
	redisURL string
	redisPID int
	project  string    // compose project, with --target compose
	out      io.Writer // progress and the question
	in       io.Reader // the operator's answer, without --answer
}

// drillSetupError says a drill could not start: no gateway, no admin
// token, a target that cannot inject this fault. Nothing was injected.
type drillSetupError struct{ msg string }

func (e *drillSetupError) Error() string { return e.msg }

func setupErrorf(format string, a ...any) error {
	return &drillSetupError{fmt.Sprintf(format, a...)}
}

// faultTarget is what a drill needs from where the cluster runs: apply a
// chaos verb (kill, restart, pause, resume, partition, heal) to a node or
// an alias, and say which node it hit.
type faultTarget interface {
	Apply(ctx context.Context, verb, node string) (string, error)
	// Where tells the operator where to look besides the gateways.
	Where() string
}

// faultNode is the node id in an admin answer ("kill placement-2
// (leader)" -> placement-2).
func faultNode(msg string) string {
	f := strings.Fields(msg)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// drillEnv is what a scenario works with while it runs.
type drillEnv struct {
	opts    drillOptions
	gws     []*client.Client
	urls    []string
	target  faultTarget
	prefix  string
	account string
	log     drill.Log
	// loadCtx ends every load stream; streams is their WaitGroup.
	loadCtx  context.Context
	stopLoad context.CancelFunc
	streams  sync.WaitGroup
	// records captured from the gateway's stream for coldstart check.
	recMu sync.Mutex
	recs  []api.Record
	// streamErr is why the records stream ended early, if it did: the
	// check then judges fewer records than the drill made.
	streamErr error
	limits    []check.LimitChange
	created   []string
	// faults and recovery say what the drill did, in order.
	faults, recovery []string
	recovering       bool
	// handler is the drill's longest handler, for the checker's unsteady
	// span (records of invocations cut off with a node arrive late or
	// never).
	handler time.Duration
	// faultAt and steadyAt bound the span that is not steady state.
	faultAt, steadyAt time.Time
	// callTimeout bounds each load request: a hung request becomes an
	// observation instead of a stuck goroutine.
	callTimeout time.Duration
	seq         atomic.Int64
}

// scenario is one drill's script. setup creates functions and starts the
// load; inject applies the fault and returns what it did; observe returns
// once the signal had its chance to show (or its deadline passed), with the
// evidence; recover undoes the fault and waits until the cluster serves
// again; cleanup deletes what setup made.
type scenario struct {
	setup   func(ctx context.Context, e *drillEnv) error
	inject  func(ctx context.Context, e *drillEnv) error
	observe func(ctx context.Context, e *drillEnv) []drill.Evidence
	recover func(ctx context.Context, e *drillEnv) error
	cleanup func(ctx context.Context, e *drillEnv)
}

func runOneDrill(ctx context.Context, o drillOptions) (*drill.Result, error) {
	mk, ok := scenarios[o.spec.Name]
	if !ok {
		return nil, setupErrorf("drill %s has no script", o.spec.Name)
	}
	sc := mk()
	if err := o.spec.Validate(); err != nil {
		return nil, err
	}
	e := &drillEnv{opts: o, account: gateway.DefaultAccount, callTimeout: 3 * time.Second}
	urls := o.gateways
	if len(urls) == 0 {
		urls = []string{client.DefaultGateway("")}
	}
	for _, u := range urls {
		c, err := client.New(u, client.WithCredentials(client.EnvCredentials()))
		if err != nil {
			return nil, setupErrorf("gateway %s: %v", u, err)
		}
		e.gws = append(e.gws, c)
		e.urls = append(e.urls, c.BaseURL())
	}
	switch o.target {
	case "up":
		t, err := newUpTarget(o.admin, o.data)
		if err != nil {
			return nil, setupErrorf("%v", err)
		}
		e.target = t
	case "compose":
		// The compose target (chaos_compose.go) speaks the same verbs and
		// aliases through docker.
		t, err := newChaosTarget(ctx, "compose", "", "", o.project, "")
		if err != nil {
			return nil, setupErrorf("--target compose: %v", err)
		}
		e.target = t
	default:
		return nil, setupErrorf("--target %q: want up or compose", o.target)
	}
	var b [3]byte
	rand.Read(b[:])
	e.prefix = "drill-" + o.spec.Name + "-" + hex.EncodeToString(b[:])

	st, err := e.status(ctx)
	if err != nil {
		return nil, setupErrorf("cannot read the cluster's status: %s", client.Describe(err, e.urls[0]))
	}
	e.limits = statusLimits(*st)
	for _, a := range st.Accounts {
		if a.Account != "" {
			e.account = a.Account
			break
		}
	}
	if err := e.startRecords(ctx); err != nil {
		return nil, setupErrorf("records stream: %s", client.Describe(err, e.urls[0]))
	}
	e.loadCtx, e.stopLoad = context.WithCancel(ctx)
	defer e.stopLoad()

	fmt.Fprintf(o.out, "drill %s: %s\n", o.spec.Name, o.spec.Title)
	fmt.Fprintf(o.out, "setting up functions %s-* and load ...\n", e.prefix)
	defer func() {
		if sc.cleanup != nil {
			sc.cleanup(context.WithoutCancel(ctx), e)
		}
		e.deleteCreated(context.WithoutCancel(ctx))
	}()
	if err := sc.setup(ctx, e); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}

	e.faultAt = time.Now()
	if err := sc.inject(ctx, e); err != nil {
		// A half-applied fault is undone before reporting.
		if sc.recover != nil {
			_ = sc.recover(context.WithoutCancel(ctx), e)
		}
		return nil, setupErrorf("inject: %v", err)
	}
	answers := e.ask()
	evidence := sc.observe(ctx, e)
	var answer string
	var answeredAt time.Time
	if o.answer != "" {
		answer, answeredAt = o.answer, time.Now()
	} else {
		select {
		case a := <-answers:
			answer, answeredAt = a.text, a.at
		case <-ctx.Done():
			// Interrupted before an answer: the fault must not outlive
			// the drill.
			fmt.Fprintln(o.out, "\ninterrupted: recovering the cluster ...")
			e.recovering = true
			if err := sc.recover(context.WithoutCancel(ctx), e); err != nil {
				fmt.Fprintln(o.out, "recover:", err)
			}
			return nil, ctx.Err()
		}
	}
	fmt.Fprintln(o.out, "recovering the cluster ...")
	e.recovering = true
	recErr := sc.recover(context.WithoutCancel(ctx), e)
	e.steadyAt = time.Now()
	e.stopLoad()
	e.streams.Wait()
	if recErr != nil {
		evidence = append(evidence, drill.Evidence{What: "the cluster recovers", Present: false, Detail: recErr.Error()})
	}
	rep, file, limitsFile := e.check(ctx)
	summary := checkSummary(rep)
	e.recMu.Lock()
	if e.streamErr != nil {
		summary += "; the records stream broke early (" + e.streamErr.Error() + "): later records are not judged"
	}
	e.recMu.Unlock()
	out := drill.Outcome{Drill: o.spec.Name, Injected: o.spec.Right, Fault: e.faults, Recovery: e.recovery, Evidence: evidence,
		CheckOK: rep.OK(), CheckSummary: summary, Records: rep.Records,
		Answer: answer, FaultAt: e.faultAt, AnsweredAt: answeredAt}
	res, err := drill.Grade(o.spec, out)
	if file != "" {
		res.RecordsFile = file
		res.ReproduceCommand = "coldstart check --records " + file + " --limits " + limitsFile + " --unsteady " + e.unsteadyFlag()
	}
	return &res, err
}

type answerAt struct {
	text string
	at   time.Time
}

// ask prints the question and where to look; without --answer it reads
// the operator's answer from the terminal, asking again until it is one of
// the choices.
func (e *drillEnv) ask() <-chan answerAt {
	w := e.opts.out
	fmt.Fprintln(w, "\nSomething is wrong. Look before you answer:")
	for _, u := range e.urls {
		fmt.Fprintf(w, "  dashboard  %s/\n  metrics    %s/metrics\n", u, u)
	}
	fmt.Fprintf(w, "  status     coldstart status --gateway %s\n  top        coldstart top --gateway %s\n  records    coldstart records --gateway %s\n", e.urls[0], e.urls[0], e.urls[0])
	fmt.Fprintf(w, "  faults     %s\n", e.target.Where())
	fmt.Fprintf(w, "\nWhat broke? (the drill's own functions are %s-*)\n", e.prefix)
	for i, id := range e.opts.spec.Choices {
		c, _ := drill.CauseByID(id)
		fmt.Fprintf(w, "  %s) %s\n", drill.Letter(i), c.Text)
	}
	ch := make(chan answerAt, 1)
	if e.opts.answer != "" {
		fmt.Fprintf(w, "answer (given): %s\n", e.opts.answer)
		return ch
	}
	go func() {
		sc := bufio.NewScanner(e.opts.in)
		for {
			fmt.Fprint(w, "answer: ")
			if !sc.Scan() {
				return
			}
			if _, err := e.opts.spec.Resolve(sc.Text()); err != nil {
				fmt.Fprintln(w, err)
				continue
			}
			ch <- answerAt{sc.Text(), time.Now()}
			return
		}
	}()
	return ch
}

func (e *drillEnv) status(ctx context.Context) (*api.Status, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var last error
	for _, g := range e.gws {
		st, err := g.Status(sctx)
		if err == nil {
			return st, nil
		}
		last = err
	}
	return nil, last
}

// note records what the drill did to the cluster: the fault, or once
// recovering, its undoing.
func (e *drillEnv) note(format string, a ...any) {
	if e.recovering {
		e.recovery = append(e.recovery, fmt.Sprintf(format, a...))
		return
	}
	e.faults = append(e.faults, fmt.Sprintf(format, a...))
}

// fault applies a chaos verb through the target and notes what it hit.
func (e *drillEnv) fault(ctx context.Context, verb, node string) (string, error) {
	msg, err := e.target.Apply(ctx, verb, node)
	if err != nil {
		return "", err
	}
	e.note("%s", msg)
	node = faultNode(msg)
	// Status names nodes by id; a compose fault names the service
	// (placement1 for p1).
	if ider, ok := e.target.(interface {
		NodeID(context.Context, string) string
	}); ok {
		node = ider.NodeID(ctx, node)
	}
	return node, nil
}

func (e *drillEnv) fn(suffix string) string { return e.prefix + "-" + suffix }

// createSynthetic creates a synthetic function the drill deletes at the end.
func (e *drillEnv) createSynthetic(ctx context.Context, name, duration, cold string, timeoutSec int) error {
	_, err := e.gws[0].CreateFunction(ctx, api.CreateFunctionInput{FunctionName: name, Runtime: "synthetic", MemorySize: 128, Timeout: timeoutSec,
		Coldstart: &api.SyntheticConfig{Duration: duration, ColdStart: cold}})
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	e.created = append(e.created, name)
	if d, err := time.ParseDuration(duration); err == nil && d > e.handler {
		e.handler = d
	}
	return nil
}

func (e *drillEnv) deleteCreated(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, name := range e.created {
		if err := e.gws[0].DeleteFunction(ctx, name); err != nil && !client.IsNotFound(err) {
			fmt.Fprintf(e.opts.out, "cleanup: delete %s: %s\n", name, client.Describe(err, e.urls[0]))
		}
	}
}

// warm invokes name n times at once, so that n sandboxes exist. A gateway
// learns of a function created through another one a moment later: a
// ResourceNotFoundException is retried for a few seconds.
func (e *drillEnv) warm(ctx context.Context, name string, n int) error {
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			var err error
			drillWait(ctx, 5*time.Second, func() bool {
				_, err = e.gws[i%len(e.gws)].Invoke(ctx, name, []byte(`{}`), client.InvokeOptions{})
				return !client.IsNotFound(err)
			})
			errs <- err
		}(i)
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = fmt.Errorf("warm %s: %w", name, err)
		}
	}
	return first
}

// stream starts n load goroutines of one class until the load stops (or
// until its own ctx ends). Each calls pick for the function and payload of
// its next request and pauses every between requests, if set, to hold a
// rate (pacing, not synchronisation). Requests go round the gateways.
func (e *drillEnv) stream(ctx context.Context, class string, n int, every time.Duration, pick func(seq int64) (string, []byte, bool)) {
	for i := 0; i < n; i++ {
		e.streams.Add(1)
		go func(i int) {
			defer e.streams.Done()
			inv := loadgen.ClientInvoker{Client: e.gws[i%len(e.gws)]}
			for ctx.Err() == nil && e.loadCtx.Err() == nil {
				seq := e.seq.Add(1)
				name, payload, ok := pick(seq)
				if !ok {
					return
				}
				e.invokeOnce(ctx, inv, class, name, payload)
				if every > 0 {
					select {
					case <-time.After(every):
					case <-ctx.Done():
					case <-e.loadCtx.Done():
					}
				}
			}
		}(i)
	}
}

func (e *drillEnv) invokeOnce(ctx context.Context, inv loadgen.Invoker, class, name string, payload []byte) {
	// A request is bounded by the call timeout, and ends with the load.
	rctx, cancel := context.WithTimeout(e.loadCtx, e.callTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	start := time.Now()
	res, err := inv.Invoke(rctx, name, payload)
	o := drill.Observation{At: start, Latency: time.Since(start), Class: class}
	var ae *client.APIError
	switch {
	case err == nil:
		o.Status, o.Cold, o.Worker = http.StatusOK, res.Cold, res.Worker
		o.OK = res.FunctionError == ""
		o.ErrType = res.ErrorType
		if !o.OK && o.ErrType == "" {
			o.ErrType = res.FunctionError
		}
	case errors.As(err, &ae):
		o.Status, o.ErrType, o.Reason = ae.Status, ae.Type, ae.Reason
	case e.loadCtx.Err() != nil:
		return // the drill stopped its load: not something the cluster did
	case errors.Is(err, context.DeadlineExceeded):
		o.ErrType = "ClientTimeout"
	default:
		o.ErrType = "TransportError"
	}
	e.log.Add(o)
}

// simple is a pick function: always the same function, empty payload.
func simple(name string) func(int64) (string, []byte, bool) {
	return func(int64) (string, []byte, bool) { return name, []byte(`{}`), true }
}

// drillWait polls cond until it holds, the deadline passes or ctx ends.
func drillWait(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// since tallies the observations of class sent from t on.
func (e *drillEnv) since(class string, t time.Time) drill.Tally {
	return drill.Count(e.log.All(), drill.Filter{Class: class, From: t, Slow: e.slow()})
}

// between tallies the observations of class sent in [from, to).
func (e *drillEnv) between(class string, from, to time.Time) drill.Tally {
	return drill.Count(e.log.All(), drill.Filter{Class: class, From: from, To: to, Slow: e.slow()})
}

// inFlight tallies the observations of class in flight at some moment of
// [from, to).
func (e *drillEnv) inFlight(class string, from, to time.Time) drill.Tally {
	return drill.Count(e.log.All(), drill.Filter{Class: class, From: from, To: to, InFlight: true, Slow: e.slow()})
}

// slow is the latency that counts as hung: a second beyond the drill's
// longest handler.
func (e *drillEnv) slow() time.Duration { return e.handler + time.Second }

func (e *drillEnv) startRecords(ctx context.Context) error {
	st, err := e.gws[0].OpenRecords(ctx, "")
	if err != nil {
		return err
	}
	go func() {
		defer st.Close()
		for {
			r, err := st.Next()
			e.recMu.Lock()
			if err != nil {
				if e.streamErr == nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
					e.streamErr = err
				}
				e.recMu.Unlock()
				return
			}
			if check.Validate(r) == nil {
				e.recs = append(e.recs, r)
			}
			e.recMu.Unlock()
		}
	}()
	return nil
}

func (e *drillEnv) records() []api.Record {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return append([]api.Record(nil), e.recs...)
}

// countRecords counts the captured records keep selects.
func (e *drillEnv) countRecords(keep func(api.Record) bool) int {
	n := 0
	for _, r := range e.records() {
		if keep(r) {
			n++
		}
	}
	return n
}

// unsteady is the span the checker does not judge throttles in: from a
// handler's length before the fault (its records may be lost with a cut
// node) to a lease's expiry after the cluster recovered.
func (e *drillEnv) unsteady() check.Interval {
	from := e.faultAt.Add(-e.handler - check.DefaultWindow)
	to := e.steadyAt.Add(placement.DefaultLease.Expiry() + time.Second)
	return check.Interval{FromNs: from.UnixNano(), ToNs: to.UnixNano()}
}

func (e *drillEnv) unsteadyFlag() string {
	iv := e.unsteady()
	return fmt.Sprintf("%d/%d", iv.FromNs, iv.ToNs)
}

// check runs coldstart check over the drill's records, once the records of
// the last invocations had time to arrive, and saves them (with the limit
// history) under DATA/drills for running it again by hand.
func (e *drillEnv) check(ctx context.Context) (check.Report, string, string) {
	// Records of the last requests arrive shortly after their answers:
	// wait until the count stops growing (bounded).
	last, stable := -1, 0
	drillWait(ctx, 5*time.Second, func() bool {
		n := len(e.records())
		if n == last {
			stable++
		} else {
			last, stable = n, 0
		}
		return stable >= 6
	})
	recs := e.records()
	rep := check.Run(recs, check.Options{Limits: e.limits, Partial: true, Unsteady: []check.Interval{e.unsteady()}})
	dir := filepath.Join(e.opts.data, "drills")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return rep, "", ""
	}
	base := filepath.Join(dir, e.prefix)
	var rb, lb strings.Builder
	for _, r := range recs {
		b, _ := json.Marshal(r)
		rb.Write(append(b, '\n'))
	}
	for _, l := range e.limits {
		b, _ := json.Marshal(l)
		lb.Write(append(b, '\n'))
	}
	if os.WriteFile(base+".records.ndjson", []byte(rb.String()), 0o644) != nil || os.WriteFile(base+".limits.ndjson", []byte(lb.String()), 0o644) != nil {
		return rep, "", ""
	}
	return rep, base + ".records.ndjson", base + ".limits.ndjson"
}

func checkSummary(r check.Report) string {
	if r.OK() {
		return fmt.Sprintf("no violation; %d throttles by reason %v", sumReasons(r.ThrottleReasons), r.ThrottleReasons)
	}
	kinds := map[string]int{}
	for _, v := range r.Violations {
		kinds[v.Kind]++
	}
	return fmt.Sprintf("%d violations %v", len(r.Violations), kinds)
}

func sumReasons(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// nodeDown reports whether status shows node id as not alive (or not at
// all: a dead member may be dropped from the list).
func nodeDown(st *api.Status, id string) bool {
	for _, n := range st.Nodes {
		if n.ID == id {
			return n.State == "dead" || n.State == "suspect"
		}
	}
	return true
}

// nodeState is node id's state in status ("absent" when not listed).
func nodeState(st *api.Status, id string) string {
	for _, n := range st.Nodes {
		if n.ID == id {
			return n.State
		}
	}
	return "absent"
}
