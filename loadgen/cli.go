package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
)

const loadHelp = `Offer an open-loop load to a function and summarize what happened.

Arrivals follow a schedule fixed in advance, whatever the answers: a slow
platform does not slow the offered load, and each latency is measured from
the time the request was due. Requests that would exceed --concurrency in
flight are not sent and are reported as dropped.

Shapes:
  constant  --rate, evenly spaced
  poisson   --rate, exponential gaps (the seed's simulator: --rate 500 --duration 30s)
  step      --rate, then from --step-at a ramp over --ramp to --rate x --step-factor
  spike     --base-rate, with a burst to --rate during [--spike-at, --spike-at + --spike-for)`

const loadExample = `coldstart load --function hello --rate 500 --duration 30s --shape poisson
  coldstart load --function hello --rate 50 --duration 4m --shape step --ramp 90s --json`

// Main runs `coldstart load`. args excludes the program and command names.
// It returns the exit code: 0 done, 1 the run could not start, 2 bad usage,
// 130 interrupted (the summary is still printed).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var (
		function    = fs.String("function", "", "function `NAME` to invoke (required; NAME:QUALIFIER also works)")
		rate        = fs.Float64("rate", 0, "requests per second (required; the burst rate for spike, the start rate for step)")
		duration    = fs.Duration("duration", 10*time.Second, "length of the load window")
		shape       = fs.String("shape", ShapeConstant, "constant | poisson | step | spike")
		arrivals    = fs.String("arrivals", "", "even | poisson (default: poisson for --shape poisson, else even)")
		concurrency = fs.Int("concurrency", DefaultConcurrency, "cap on requests in flight; arrivals over it are dropped")
		payload     = fs.String("payload", "{}", "event `JSON`; @FILE reads a file")
		qualifier   = fs.String("qualifier", "", "version or alias to invoke")
		invType     = fs.String("invocation-type", "RequestResponse", "RequestResponse, or Event: asynchronous load (each request counts once the event is stored)")
		gateway     = fs.String("gateway", "", "gateway `URL` (default $"+client.EnvGateway+", else "+client.DefaultGatewayURL+")")
		asJSON      = fs.Bool("json", false, "print the summary as one JSON object")
		seed        = fs.Int64("seed", 7, "random seed of Poisson arrivals (the seed's simulator uses 7)")
		stepFactor  = fs.Float64("step-factor", DefaultStepFactor, "step: final rate as a multiple of --rate")
		stepAt      = fs.Duration("step-at", 0, "step: when the ramp starts (default: half of --duration)")
		ramp        = fs.Duration("ramp", 0, "step: how long the ramp takes; 0 is an instant step (default: 90s, or half the time left after --step-at if shorter)")
		baseRate    = fs.Float64("base-rate", 0, "spike: the rate outside the burst (default: --rate / 10)")
		spikeAt     = fs.Duration("spike-at", 0, "spike: when the burst starts (default: a third of --duration)")
		spikeFor    = fs.Duration("spike-for", 0, "spike: how long the burst lasts (default: a third of --duration)")
		timeout     = fs.Duration("timeout", 0, "per-request timeout (0: none)")
		drain       = fs.Duration("drain", DefaultDrain, "after the window, how long to wait for requests in flight")
		records     = fs.Bool("records", false, "follow the gateway's records during the run and count avoidable cold starts")
		slack       = fs.Duration("slack", 5*time.Millisecond, "with --records: how long a sandbox must have been idle to count as available")
	)
	progress := &optBool{}
	fs.Var(progress, "progress", "show the live progress line even when stderr is not a terminal (--progress=false: never)")
	fs.Usage = client.Usage(fs, "coldstart load --function NAME --rate R --duration D [flags]", loadHelp, loadExample)

	if client.WantsHelp(args) {
		fs.SetOutput(stdout)
	} else {
		fs.SetOutput(stderr)
	}
	pos, err := client.ParseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "coldstart load: "+format+"\n", a...)
		return 2
	}
	if *function == "" && len(pos) == 1 {
		*function, pos = pos[0], nil
	}
	if len(pos) > 0 {
		return fail("unexpected argument %q (see --help)", pos[0])
	}
	if *function == "" {
		return fail("--function is required (see --help)")
	}
	if *rate <= 0 {
		return fail("--rate must be > 0 (see --help)")
	}
	if *duration <= 0 {
		return fail("--duration must be > 0")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	sh := Shape{Kind: *shape, Rate: *rate, StepFactor: *stepFactor, StepAt: *stepAt, Ramp: *ramp,
		BaseRate: *baseRate, SpikeAt: *spikeAt, SpikeFor: *spikeFor}
	if !set["ramp"] {
		sh.Ramp = -1 // let WithDefaults fit it to the run
	}
	sh = sh.WithDefaults(*duration)
	if err := sh.Validate(); err != nil {
		return fail("%v", err)
	}
	if sh.Kind == ShapeStep && set["ramp"] && sh.StepAt+sh.Ramp > *duration {
		fmt.Fprintf(stderr, "coldstart load: note: the ramp ends after the run; the rate reaches only %.1fx\n",
			sh.RateAt(*duration)/sh.Rate)
	}
	body, err := client.ReadPayload(*payload, nil)
	if err != nil {
		return fail("%v", err)
	}

	c, err := client.New(client.DefaultGateway(*gateway), client.WithMaxIdleConnsPerHost(max(*concurrency, client.DefaultMaxIdleConnsPerHost)))
	if err != nil {
		return fail("%v", err)
	}
	defer c.CloseIdleConnections()

	if code := preflight(ctx, c, *function, stderr); code != 0 {
		return code
	}

	cfg := Config{
		Function:    *function,
		Payload:     body,
		Shape:       sh,
		Arrivals:    *arrivals,
		Duration:    *duration,
		Seed:        *seed,
		Concurrency: *concurrency,
		Timeout:     *timeout,
		Drain:       *drain,
	}
	if cfg.Arrivals == "" {
		cfg.Arrivals = sh.DefaultArrivals()
	}
	tty := isTerminal(stderr)
	if progress.enabled(tty) {
		pp := &progressPrinter{w: stderr, tty: tty}
		cfg.Progress = pp.print
		fmt.Fprintf(stderr, "load: %s, %s for %s against %s (about %.0f arrivals)\n",
			cfg.Function, sh, cfg.Duration, c.BaseURL(), sh.Expected(cfg.Duration))
	}

	var rc *recordCollector
	if *records {
		rc = startRecords(ctx, c, baseName(*function), 2*time.Second)
	}

	if *invType != "RequestResponse" && *invType != "Event" {
		fmt.Fprintf(stderr, "coldstart load: --invocation-type %q: want RequestResponse or Event\n", *invType)
		return 2
	}
	s, err := Run(ctx, ClientInvoker{Client: c, Qualifier: *qualifier, InvocationType: *invType}, cfg)
	if err != nil {
		if rc != nil {
			rc.stop()
		}
		return fail("%v", err)
	}
	if rc != nil {
		recs, rerr := rc.wait(ctx, int(s.Cold+s.Warm), 5*time.Second)
		if rerr != nil {
			fmt.Fprintf(stderr, "coldstart load: records: %v\n", rerr)
		}
		if len(recs) > 0 {
			s.AddRecords(recs, *slack)
		}
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			fmt.Fprintf(stderr, "coldstart load: %v\n", err)
			return 1
		}
	} else if err := s.WriteTable(stdout); err != nil {
		return 1
	}
	if s.Interrupted {
		return 130
	}
	return 0
}

// preflight fails fast, before any load, when the gateway is unreachable or
// the function does not exist. Other answers (an older gateway without
// GetFunction, say) let the run go ahead.
func preflight(ctx context.Context, c *client.Client, function string, stderr io.Writer) int {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.GetFunction(pctx, baseName(function))
	if err == nil {
		return 0
	}
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Type == client.TypeResourceNotFound:
		fmt.Fprintf(stderr, "coldstart load: function %q not found (create it with `coldstart function create %s ...`)\n", function, baseName(function))
		return 1
	case errors.As(err, &ae):
		return 0
	case ctx.Err() != nil:
		return 130
	}
	fmt.Fprintln(stderr, "coldstart load: "+client.Describe(err, c.BaseURL()))
	return 1
}

// baseName strips a qualifier or ARN prefix: "fn:alias" and
// "arn:aws:lambda:r:123:function:fn:1" both give "fn".
func baseName(name string) string {
	if i := strings.Index(name, ":function:"); i >= 0 {
		name = name[i+len(":function:"):]
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	return name
}

// optBool is a boolean flag that remembers whether it was given.
type optBool struct{ set, val bool }

func (o *optBool) String() string {
	if o == nil || !o.set {
		return "auto"
	}
	return strconv.FormatBool(o.val)
}
func (o *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	o.set, o.val = true, v
	return nil
}
func (o *optBool) IsBoolFlag() bool { return true }
func (o *optBool) enabled(auto bool) bool {
	if o.set {
		return o.val
	}
	return auto
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressPrinter draws the live line: redrawn in place ~4 times a second on
// a terminal, one line a second elsewhere (logs, CI).
type progressPrinter struct {
	w        io.Writer
	tty      bool
	lastLine time.Duration
}

func (pp *progressPrinter) print(p Progress) {
	line := fmt.Sprintf("%6.1fs  sent %d  ok %d  cold %d  throttled %d  errors %d  dropped %d  in-flight %d  rps %.0f  p99 %s",
		p.Elapsed.Seconds(), p.Sent, p.OK, p.Cold, p.Throttled, p.Errors, p.Dropped, p.InFlight, p.RPS, fmtDur(p.P99))
	switch {
	case pp.tty && p.Final:
		fmt.Fprintf(pp.w, "\r%s\x1b[K\n", line)
	case pp.tty:
		fmt.Fprintf(pp.w, "\r%s\x1b[K", line)
	case p.Final || p.Elapsed-pp.lastLine >= time.Second:
		pp.lastLine = p.Elapsed
		fmt.Fprintln(pp.w, line)
	}
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%sms", msStr(ms(d)))
}

// recordCollector follows the records stream during a run.
type recordCollector struct {
	mu     sync.Mutex
	recs   []api.Record
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startRecords opens the records stream and returns once it is open, or
// after connectWait (a gateway that sends no headers before its first record
// must not hold up the run; the few records before it are then missed).
func startRecords(ctx context.Context, c *client.Client, function string, connectWait time.Duration) *recordCollector {
	rctx, cancel := context.WithCancel(ctx)
	rc := &recordCollector{cancel: cancel, done: make(chan struct{})}
	open := make(chan struct{})
	go func() {
		defer close(rc.done)
		st, err := c.OpenRecords(rctx, function)
		close(open)
		if err != nil {
			if rctx.Err() == nil {
				rc.setErr(err)
			}
			return
		}
		defer st.Close()
		for {
			r, err := st.Next()
			if err != nil {
				if rctx.Err() == nil && !errors.Is(err, io.EOF) {
					rc.setErr(err)
				}
				return
			}
			rc.mu.Lock()
			rc.recs = append(rc.recs, r)
			rc.mu.Unlock()
		}
	}()
	t := time.NewTimer(connectWait)
	defer t.Stop()
	select {
	case <-open:
	case <-t.C:
	}
	return rc
}

func (rc *recordCollector) setErr(err error) {
	rc.mu.Lock()
	rc.err = err
	rc.mu.Unlock()
}

func (rc *recordCollector) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.recs)
}

func (rc *recordCollector) stop() {
	rc.cancel()
	<-rc.done
}

// wait gives the records of the last requests up to grace to arrive (they
// travel from the workers), then stops the stream.
func (rc *recordCollector) wait(ctx context.Context, want int, grace time.Duration) ([]api.Record, error) {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for rc.count() < want {
		select {
		case <-rc.done:
			break wait
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case <-tick.C:
		}
	}
	rc.stop()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.recs, rc.err
}
