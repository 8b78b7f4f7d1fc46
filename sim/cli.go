package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/quota"
	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

const usage = `coldstart sim: replay a trace through coldstart's quota and pool policy code on a virtual clock.

Usage:
  coldstart sim [flags]

Input (one of):
  --trace FILE                      CSV time_ms,function,duration_ms[,memory_mb] (header required)
  --azure FILE [--azure-durations FILE]
                                    Azure Functions 2019 per-minute counts (and duration percentiles)
  --shape steady|poisson|spike|step|diurnal --rate RPS --duration D --seed N
                                    a generated arrival process; --functions N copies it
  --gen name=api,shape=spike,rate=5,peak=500,at=60s,for=30s,handler=80ms,memory=1024
                                    one generated function per flag (repeat for several)

Examples:
  # the seed's spike scenario, in its own model, as JSON
  coldstart sim --model seed --shape poisson --rate 500 --duration 30s --json
  # the seed's serverless_sim.py on its own arrivals (F1)
  coldstart sim --model seed --trace arrivals.csv --cold-start 180ms --keep-alive 600s --memory 512 --json
  # the seed's exercise: when does provisioned concurrency cost more than the cold starts it removes?
  coldstart sim --shape poisson --cold-start 180ms --duration 30s --horizon 300s --provisioned 50 --sweep rate=100:1000:100
  # keep-alive policies on the Azure trace, with a plot
  coldstart sim --azure invocations_per_function_md.anon.d01.csv --azure-limit 500 --keep-alive-policy hybrid --plot day1.svg

Flags:
`

// options holds every flag; sweeps copy it and change one field.
type options struct {
	trace, azure, azureDur string
	azureLimit             int
	shape                  string
	rate                   float64
	duration               time.Duration
	seed                   uint64
	handler                string
	functions              int
	peak, factor, amp      float64
	at, forDur, ramp       time.Duration
	period                 time.Duration
	gens, fns              multiFlag

	model, coldStart, runtime, policy string
	keepAlive                         time.Duration
	memory, provisioned, reserved     int
	accountLimit, scaleBurst          int
	scaleWindow, horizon              time.Duration

	fleetUtil                                    float64
	priceGBs, priceReqM, pricePCHeld, pricePCRun float64
	priceFleet                                   float64

	json             bool
	plot, writeTrace string
	plotBuckets, top int
	sweep            string
	against          string
	speed            float64
	maxInFlight      int
	requestTimeout   time.Duration
	clock            Clock // tests
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func newFlags(stderr io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("coldstart sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.trace, "trace", "", "CSV trace `FILE`")
	fs.StringVar(&o.azure, "azure", "", "Azure Functions 2019 invocations `FILE`")
	fs.StringVar(&o.azureDur, "azure-durations", "", "Azure Functions 2019 durations `FILE`")
	fs.IntVar(&o.azureLimit, "azure-limit", 0, "read only the first `N` functions of --azure (0: all)")
	fs.StringVar(&o.shape, "shape", "", "generated arrivals: steady|poisson|spike|step|diurnal")
	fs.Float64Var(&o.rate, "rate", 50, "generated requests per second (mean or base)")
	fs.DurationVar(&o.duration, "duration", 300*time.Second, "generated trace length")
	fs.Uint64Var(&o.seed, "seed", 7, "random seed (arrivals, Azure spreading, cold-start draws)")
	fs.StringVar(&o.handler, "handler", "80ms", "generated handler duration: 80ms, uniform:50ms:150ms, lognormal:100ms:0.5, choice:80ms|200ms")
	fs.IntVar(&o.functions, "functions", 1, "generate `N` functions with the same shape")
	fs.Float64Var(&o.peak, "peak", 0, "spike: requests per second during the spike (default 10x --rate)")
	fs.DurationVar(&o.at, "at", 0, "spike/step: start (default a third of --duration)")
	fs.DurationVar(&o.forDur, "for", 0, "spike: length (default 30s)")
	fs.Float64Var(&o.factor, "factor", 0, "step: final rate / --rate (default 14)")
	fs.DurationVar(&o.ramp, "ramp", 0, "step: ramp length (default 90s)")
	fs.DurationVar(&o.period, "period", 0, "diurnal: period (default 24h)")
	fs.Float64Var(&o.amp, "amplitude", 0, "diurnal: relative amplitude 0..1 (default 0.8)")
	fs.Var(&o.gens, "gen", "a generated function `SPEC` (repeatable)")

	fs.StringVar(&o.model, "model", "full", "seed (the article's serverless_sim.py) or full")
	fs.StringVar(&o.coldStart, "cold-start", "", "fixed cold start `D` (seed default 180ms; full default: the runtime's phase distributions)")
	fs.StringVar(&o.runtime, "runtime", "python3.12", "full: runtime whose cold-start phases to draw (python3.12, nodejs20.x, go, java21, dotnet8, ruby3.3)")
	fs.DurationVar(&o.keepAlive, "keep-alive", 600*time.Second, "keep-alive TTL of idle sandboxes (the hybrid policy's fallback)")
	fs.StringVar(&o.policy, "keep-alive-policy", "fixed", "full: fixed or hybrid (Shahrad et al., ATC 2020)")
	fs.IntVar(&o.memory, "memory", 512, "memory `MB` of functions whose input gives none")
	fs.IntVar(&o.provisioned, "provisioned", 0, "full: provisioned concurrency of every function")
	fs.IntVar(&o.reserved, "reserved", -1, "full: reserved concurrency of every function (-1: none)")
	fs.IntVar(&o.accountLimit, "account-limit", quota.DefaultAccountLimit, "full: account concurrency limit")
	fs.IntVar(&o.scaleBurst, "scale-burst", quota.DefaultScaleBurst, "full: new sandboxes per --scale-window per function (0: unlimited)")
	fs.DurationVar(&o.scaleWindow, "scale-window", quota.DefaultScaleWindow, "full: scaling-rate refill window")
	fs.Var(&o.fns, "fn", "full: per-function settings `NAME:key=val,...` (memory, runtime, cold-start, provisioned, reserved)")
	fs.DurationVar(&o.horizon, "horizon", 0, "billing window for provisioned concurrency and the fleet (default: the run's length)")

	fs.Float64Var(&o.fleetUtil, "fleet-utilisation", 0, "compare with an always-on fleet at this average utilisation (e.g. 0.4)")
	fs.Float64Var(&o.priceFleet, "fleet-price-gb-hour", DefaultPrices.FleetGBHour, "always-on fleet price per GB-hour")
	fs.Float64Var(&o.priceGBs, "price-gb-s", DefaultPrices.GBSecond, "on-demand price per GB-s")
	fs.Float64Var(&o.priceReqM, "price-million-requests", DefaultPrices.Request*1e6, "price per million requests")
	fs.Float64Var(&o.pricePCHeld, "price-pc-held", DefaultPrices.PCHeldGBSecond, "provisioned concurrency price per GB-s configured")
	fs.Float64Var(&o.pricePCRun, "price-pc-running", DefaultPrices.PCRunGBSecond, "provisioned concurrency duration price per GB-s")

	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.plot, "plot", "", "write concurrency, warm pool and cold starts over time to `FILE.svg`")
	fs.IntVar(&o.plotBuckets, "plot-buckets", 400, "time buckets of --plot")
	fs.IntVar(&o.top, "top", 20, "table rows: the functions with the most requests")
	fs.StringVar(&o.writeTrace, "write-trace", "", "also write the input as a CSV trace to `FILE`")
	fs.StringVar(&o.sweep, "sweep", "", "run once per value: provisioned|keep-alive|rate|peak|memory|account-limit=FROM:TO:STEP")
	fs.StringVar(&o.against, "against", "", "replay in real time against the gateway at `URL` and compare")
	fs.Float64Var(&o.speed, "speed", 1, "--against: replay speed-up")
	fs.IntVar(&o.maxInFlight, "max-inflight", 256, "--against: requests outstanding at once")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 60*time.Second, "--against: HTTP timeout per request")
	return fs, o
}

// Main is `coldstart sim`. It returns the process exit code: 0 on success,
// 2 for bad flags or input specifications, 1 when the run fails.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, o := newFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "coldstart sim: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintln(stderr, "coldstart sim:", err)
		return 2
	}
	if err := o.run(ctx, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "coldstart sim:", err)
		var pe *ParseError
		if errors.As(err, &pe) || errors.Is(err, ErrBadSpec) || errors.Is(err, ErrConfig) {
			return 2
		}
		return 1
	}
	return 0
}

// check rejects flag combinations that cannot mean anything.
func (o *options) check() error {
	inputs := 0
	for _, set := range []bool{o.trace != "", o.azure != "", o.shape != "" || len(o.gens) > 0} {
		if set {
			inputs++
		}
	}
	switch {
	case inputs != 1:
		return errors.New("give exactly one input: --trace, --azure, or --shape/--gen (see --help)")
	case o.model != "seed" && o.model != "full":
		return fmt.Errorf("--model %q: want seed or full", o.model)
	case o.policy != "fixed" && o.policy != "hybrid":
		return fmt.Errorf("--keep-alive-policy %q: want fixed or hybrid", o.policy)
	case o.memory < MinMemoryMB || o.memory > MaxMemoryMB:
		return fmt.Errorf("--memory must be %d to %d MB", MinMemoryMB, MaxMemoryMB)
	case o.keepAlive < 0 || o.horizon < 0:
		return errors.New("--keep-alive and --horizon must not be negative")
	case o.fleetUtil < 0 || o.fleetUtil > 1:
		return errors.New("--fleet-utilisation must be within 0..1")
	case o.functions < 1:
		return errors.New("--functions must be at least 1")
	}
	if o.model == "seed" && (o.provisioned != 0 || o.reserved >= 0 || o.policy != "fixed" || len(o.fns) > 0) {
		return errors.New("--provisioned, --reserved, --fn and --keep-alive-policy need --model full (the seed's model has none of them)")
	}
	return nil
}

func (o *options) run(ctx context.Context, stdout, stderr io.Writer) error {
	if o.sweep != "" {
		return o.runSweep(stdout)
	}
	tr, err := o.input()
	if err != nil {
		return err
	}
	if o.writeTrace != "" {
		if err := writeFile(o.writeTrace, func(w io.Writer) error { return WriteCSV(w, tr) }); err != nil {
			return err
		}
	}
	res, err := o.simulate(tr)
	if err != nil {
		return err
	}
	if o.against != "" {
		return o.runAgainst(ctx, tr, res, stdout, stderr)
	}
	if o.plot != "" {
		if err := writeFile(o.plot, func(w io.Writer) error { return WritePlot(w, res, o.title(tr)) }); err != nil {
			return err
		}
	}
	if o.json {
		return WriteJSON(stdout, res)
	}
	WriteTable(stdout, res, o.top)
	return nil
}

func (o *options) title(tr *Trace) string {
	return fmt.Sprintf("coldstart sim --model %s: %d requests, %d functions", o.model, len(tr.Events), len(tr.Functions))
}

func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// input builds the trace from whichever input flag was given.
func (o *options) input() (*Trace, error) {
	switch {
	case o.trace != "":
		f, err := os.Open(o.trace)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ReadCSV(f, o.trace)
	case o.azure != "":
		return o.readAzure()
	}
	specs, err := o.shapeSpecs()
	if err != nil {
		return nil, err
	}
	return Generate(specs)
}

func (o *options) readAzure() (*Trace, error) {
	h, err := ParseHandler(o.handler)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(o.azure)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var dur io.Reader
	if o.azureDur != "" {
		df, err := os.Open(o.azureDur)
		if err != nil {
			return nil, err
		}
		defer df.Close()
		dur = df
	}
	return ReadAzure(f, o.azure, dur, o.azureDur, AzureOptions{Seed: o.seed, Limit: o.azureLimit, Handler: h})
}

func (o *options) shapeSpecs() ([]ShapeSpec, error) {
	h, err := ParseHandler(o.handler)
	if err != nil {
		return nil, err
	}
	shape := o.shape
	if shape == "" {
		shape = ShapePoisson
	}
	base := ShapeSpec{Shape: shape, Rate: o.rate, Duration: o.duration, Seed: o.seed, Handler: h, Peak: o.peak,
		At: o.at, For: o.forDur, Factor: o.factor, Ramp: o.ramp, Period: o.period, Amplitude: o.amp}
	var specs []ShapeSpec
	if len(o.gens) > 0 {
		for i, g := range o.gens {
			b := base
			b.Name = "fn" + strconv.Itoa(i+1)
			s, err := ParseGen(g, b)
			if err != nil {
				return nil, err
			}
			specs = append(specs, s)
		}
		return specs, nil
	}
	for i := 0; i < o.functions; i++ {
		s := base
		s.Name = "fn"
		if o.functions > 1 {
			s.Name = "fn" + strconv.Itoa(i+1)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

func (o *options) prices() Prices {
	return Prices{GBSecond: o.priceGBs, Request: o.priceReqM / 1e6, PCHeldGBSecond: o.pricePCHeld,
		PCRunGBSecond: o.pricePCRun, FleetGBHour: o.priceFleet, Requests: o.model == "full"}
}

// simulate runs the chosen model on tr.
func (o *options) simulate(tr *Trace) (*Result, error) {
	var res *Result
	if o.model == "seed" {
		cfg, err := o.seedConfig()
		if err != nil {
			return nil, err
		}
		res = RunSeed(tr, cfg)
	} else {
		cfg, err := o.fullConfig()
		if err != nil {
			return nil, err
		}
		if res, err = RunFull(tr, cfg); err != nil {
			return nil, err
		}
	}
	if o.fleetUtil > 0 {
		res.Fleet = o.prices().fleet(res, o.fleetUtil)
	}
	return res, nil
}

func (o *options) seedConfig() (SeedConfig, error) {
	cfg := SeedConfig{ColdStartMs: 180, KeepAliveS: o.keepAlive.Seconds(), MemoryMB: o.memory, Prices: o.prices(),
		Horizon: o.horizon.Seconds()}
	if o.coldStart != "" {
		d, err := time.ParseDuration(o.coldStart)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("%w: --cold-start %q is not a duration such as 180ms", ErrBadSpec, o.coldStart)
		}
		cfg.ColdStartMs = float64(d) / float64(time.Millisecond)
	}
	if o.plot != "" {
		cfg.PlotBuckets = o.plotBuckets
	}
	return cfg, nil
}

func (o *options) fullConfig() (FullConfig, error) {
	cfg := DefaultFullConfig()
	cfg.Default = FunctionConfig{MemoryMB: 0, Runtime: o.runtime, ColdStart: -1, Provisioned: o.provisioned, Reserved: o.reserved}
	if o.coldStart != "" {
		d, err := time.ParseDuration(o.coldStart)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("%w: --cold-start %q is not a duration such as 180ms", ErrBadSpec, o.coldStart)
		}
		cfg.Default.ColdStart = d
	}
	if o.memory != 512 {
		cfg.Default.MemoryMB = o.memory // the flag's default leaves the trace's own memory
	}
	cfg.AccountLimit = o.accountLimit
	cfg.Rate = quota.Rate{Burst: o.scaleBurst, Window: o.scaleWindow}
	cfg.KeepAlive = o.keepAlive
	if o.policy == "hybrid" {
		h := DefaultHybrid(o.keepAlive)
		cfg.Hybrid = &h
	}
	cfg.Seed = o.seed
	cfg.Prices = o.prices()
	cfg.Horizon = o.horizon
	if o.plot != "" {
		cfg.PlotBuckets = o.plotBuckets
	}
	over, err := parseFnFlags(o.fns, cfg.Default)
	cfg.Overrides = over
	return cfg, err
}

// parseFnFlags reads --fn NAME:key=val,... on top of the default settings.
func parseFnFlags(flags []string, def FunctionConfig) (map[string]FunctionConfig, error) {
	out := map[string]FunctionConfig{}
	for _, s := range flags {
		name, kvs, ok := strings.Cut(s, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: --fn %q: want NAME:key=val,...", ErrBadSpec, s)
		}
		fc, seen := out[name]
		if !seen {
			fc = def
		}
		for _, kv := range strings.Split(kvs, ",") {
			if err := fc.set(kv); err != nil {
				return nil, fmt.Errorf("--fn %q: %w", s, err)
			}
		}
		out[name] = fc
	}
	return out, nil
}

func (fc *FunctionConfig) set(kv string) error {
	k, v, _ := strings.Cut(kv, "=")
	var err error
	switch strings.TrimSpace(k) {
	case "memory":
		fc.MemoryMB, err = strconv.Atoi(v)
		if err == nil && (fc.MemoryMB < MinMemoryMB || fc.MemoryMB > MaxMemoryMB) {
			err = fmt.Errorf("must be %d to %d", MinMemoryMB, MaxMemoryMB)
		}
	case "runtime":
		fc.Runtime = v
	case "cold-start":
		fc.ColdStart, err = time.ParseDuration(v)
	case "provisioned":
		fc.Provisioned, err = strconv.Atoi(v)
	case "reserved":
		fc.Reserved, err = strconv.Atoi(v)
	default:
		return fmt.Errorf("%w: unknown key %q (memory, runtime, cold-start, provisioned, reserved)", ErrBadSpec, k)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadSpec, kv, err)
	}
	return nil
}

// runSweep runs the model once per value. Sweeping the arrival rate (or
// spike peak) with --provisioned N also runs each value without provisioned
// concurrency: that is the seed's exercise.
func (o *options) runSweep(stdout io.Writer) error {
	sw, err := ParseSweep(o.sweep)
	if err != nil {
		return err
	}
	if (sw.Param == SweepRate || sw.Param == SweepPeak) && o.shape == "" && len(o.gens) == 0 {
		return fmt.Errorf("%w: --sweep %s needs a generated input (--shape or --gen)", ErrBadSpec, sw.Param)
	}
	exercise := (sw.Param == SweepRate || sw.Param == SweepPeak) && o.provisioned > 0
	var rows []SweepRow
	for _, v := range sw.Values {
		x := *o
		x.apply(sw.Param, v)
		row := SweepRow{Value: v}
		if row.Res, err = x.runOnce(); err != nil {
			return fmt.Errorf("%s=%s: %w", sw.Param, sw.label(v), err)
		}
		if exercise {
			x.provisioned = 0
			if row.Base, err = x.runOnce(); err != nil {
				return err
			}
		}
		rows = append(rows, row)
	}
	if o.json {
		return writeSweepJSON(stdout, sw, rows)
	}
	WriteSweep(stdout, sw, rows)
	return nil
}

func (o *options) apply(param string, v float64) {
	switch param {
	case SweepProvisioned:
		o.provisioned = int(v)
	case SweepKeepAlive:
		o.keepAlive = time.Duration(v * float64(time.Second))
	case SweepRate:
		o.rate = v
		o.gens = appendGen(o.gens, "rate", v)
	case SweepPeak:
		o.peak = v
		o.gens = appendGen(o.gens, "peak", v)
	case SweepMemory:
		o.memory = int(v)
	case SweepLimit:
		o.accountLimit = int(v)
	}
}

// appendGen sets key=v in every --gen spec (later keys win in ParseGen).
func appendGen(gens multiFlag, key string, v float64) multiFlag {
	out := make(multiFlag, len(gens))
	for i, g := range gens {
		out[i] = g + "," + key + "=" + strconv.FormatFloat(v, 'g', -1, 64)
	}
	return out
}

func (o *options) runOnce() (*Result, error) {
	tr, err := o.input()
	if err != nil {
		return nil, err
	}
	return o.simulate(tr)
}

func (o *options) runAgainst(ctx context.Context, tr *Trace, res *Result, stdout, stderr io.Writer) error {
	cold := o.coldStart
	if cold == "" && o.model == "seed" {
		cold = "180ms"
	}
	handler := o.handler
	if _, err := synthetic.ParseDist(handler); err != nil {
		handler = "" // e.g. choice:..., which the API does not take; each request sends its duration anyway
	}
	cfg := AgainstConfig{URL: o.against, Clock: o.clock, Speed: o.speed, MaxInFlight: o.maxInFlight, MemoryMB: o.memory,
		ColdStart: cold, KeepAlive: o.keepAlive.String(), Handler: handler}
	cfg.defaults()
	cfg.Client.Timeout = o.requestTimeout
	fmt.Fprintf(stderr, "replaying %d requests over %.0f s against %s\n", len(tr.Events), tr.End()/cfg.Speed, o.against)
	m, err := Replay(ctx, tr, cfg)
	if err != nil {
		return err
	}
	if o.json {
		return writeAgainstJSON(stdout, res, m)
	}
	WriteComparison(stdout, res, m)
	return nil
}
