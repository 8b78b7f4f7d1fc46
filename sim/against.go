package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
)

// --against replays a trace in real time against a running gateway through
// the Lambda Invoke API and measures what the cluster did, so that the model
// and the cluster can be compared on the same arrivals (quality goal F2).

// Clock is the wall clock the replay waits on; tests pass a virtual one.
type Clock interface {
	Now() time.Time
	SleepUntil(ctx context.Context, t time.Time) error
}

// WallClock is the real clock.
type WallClock struct{}

func (WallClock) Now() time.Time { return time.Now() }

func (WallClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// AgainstConfig configures a live replay.
type AgainstConfig struct {
	URL         string
	Client      *http.Client
	Clock       Clock
	Speed       float64 // 1 replays in real time; 2 twice as fast
	MaxInFlight int     // requests outstanding at once
	MemoryMB    int     // for functions whose trace gives none
	ColdStart   string  // the synthetic runtime's cold start, e.g. "180ms"
	KeepAlive   string  // its keep-alive, e.g. "600s"
	Handler     string  // default handler duration; the trace's own is sent per request
}

// MeasuredFn is what the cluster did for one function (or in total).
type MeasuredFn struct {
	Name        string           `json:"name"`
	Sent        int64            `json:"sent"`
	Cold        int64            `json:"cold_starts"`
	Warm        int64            `json:"warm_starts"`
	Throttles   int64            `json:"throttles"`
	Errors      int64            `json:"errors"`
	ErrorTypes  map[string]int64 `json:"error_types,omitempty"`
	P50Ms       float64          `json:"p50_ms"` // init + handler, from the response headers
	P99Ms       float64          `json:"p99_ms"`
	ClientP50Ms float64          `json:"client_p50_ms"` // round trip seen by the replayer
	ClientP99Ms float64          `json:"client_p99_ms"`
	BilledMs    float64          `json:"billed_ms"`
}

// Measured is the outcome of a live replay.
type Measured struct {
	Functions []MeasuredFn `json:"functions"`
	Total     MeasuredFn   `json:"total"`
	Late      int64        `json:"late"` // requests sent more than 10 ms behind schedule
	Notes     []string     `json:"notes,omitempty"`
}

type outcome struct {
	status     int
	errType    string
	cold       bool
	serverMs   float64
	clientMs   float64
	billedMs   float64
	err        error
	throttled  bool
	functionEr bool
}

// Replay creates the trace's functions (an existing one is reused) and sends
// every event at its time, scaled by Speed.
func Replay(ctx context.Context, tr *Trace, cfg AgainstConfig) (*Measured, error) {
	cfg.defaults()
	m := &Measured{}
	for i := range tr.Functions {
		note, err := createFunction(ctx, cfg, &tr.Functions[i], tr)
		if err != nil {
			return nil, err
		}
		if note != "" {
			m.Notes = append(m.Notes, note)
		}
	}
	out := make([]outcome, len(tr.Events))
	sem := make(chan struct{}, cfg.MaxInFlight)
	var wg sync.WaitGroup
	start := cfg.Clock.Now()
	for i := range tr.Events {
		e := &tr.Events[i]
		at := start.Add(time.Duration(e.T / cfg.Speed * float64(time.Second)))
		if err := cfg.Clock.SleepUntil(ctx, at); err != nil {
			break
		}
		sem <- struct{}{}
		if cfg.Clock.Now().Sub(at) > 10*time.Millisecond {
			m.Late++
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out[i] = invoke(ctx, cfg, tr.Functions[tr.Events[i].Fn].Name, tr.Events[i].DurMs)
			<-sem
		}(i)
	}
	wg.Wait()
	m.aggregate(tr, out)
	return m, ctx.Err()
}

func (c *AgainstConfig) defaults() {
	c.URL = strings.TrimRight(c.URL, "/")
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if c.Clock == nil {
		c.Clock = WallClock{}
	}
	if !(c.Speed > 0) {
		c.Speed = 1
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 512
	}
}

// createFunction is CreateFunction with coldstart's synthetic extension; a
// 409 means the function exists and is used as it is.
func createFunction(ctx context.Context, cfg AgainstConfig, f *Function, tr *Trace) (string, error) {
	mem := f.MemoryMB
	if mem == 0 {
		mem = cfg.MemoryMB
	}
	in := api.CreateFunctionInput{
		FunctionName: f.Name, Runtime: "synthetic", MemorySize: mem, Timeout: timeoutFor(tr),
		Coldstart: &api.SyntheticConfig{Duration: cfg.Handler, ColdStart: cfg.ColdStart, KeepAlive: cfg.KeepAlive},
	}
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+api.PathFunctions, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("create %s: %w", f.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", f.Name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
		return "", nil
	case resp.StatusCode == http.StatusConflict:
		return fmt.Sprintf("function %s exists; its configuration was kept", f.Name), nil
	}
	return "", fmt.Errorf("create %s: %s %s: %s", f.Name, resp.Status, resp.Header.Get(api.HeaderErrorType), strings.TrimSpace(string(msg)))
}

// timeoutFor is a function timeout (1-900 s) that fits the longest handler.
func timeoutFor(tr *Trace) int {
	longest := 0.0
	for _, e := range tr.Events {
		longest = math.Max(longest, e.DurMs)
	}
	return min(900, max(30, int(math.Ceil(longest/1000))+10))
}

func invoke(ctx context.Context, cfg AgainstConfig, name string, durMs float64) outcome {
	body := []byte(`{"duration_ms":` + strconv.FormatFloat(durMs, 'f', -1, 64) + `}`)
	u := cfg.URL + api.PathFunctions + "/" + url.PathEscape(name) + "/invocations"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err, errType: "ClientError"}
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return outcome{err: err, errType: "ConnectionError"}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	o := outcome{status: resp.StatusCode, clientMs: float64(time.Since(t0)) / 1e6}
	h := resp.Header
	switch {
	case resp.StatusCode == http.StatusTooManyRequests && strings.HasPrefix(h.Get(api.HeaderErrorType), "TooManyRequestsException"):
		o.throttled = true
	case resp.StatusCode/100 != 2:
		o.errType = h.Get(api.HeaderErrorType)
		if o.errType == "" {
			o.errType = strconv.Itoa(resp.StatusCode)
		}
	default:
		o.cold = h.Get(api.HeaderCold) == "true"
		initMs, _ := strconv.ParseFloat(h.Get(api.HeaderInitMs), 64)
		durMs, _ := strconv.ParseFloat(h.Get(api.HeaderDurationMs), 64)
		o.billedMs, _ = strconv.ParseFloat(h.Get(api.HeaderBilledMs), 64)
		o.serverMs = initMs + durMs
		o.functionEr = h.Get(api.HeaderFunctionError) != ""
	}
	return o
}

func (m *Measured) aggregate(tr *Trace, out []outcome) {
	type lists struct{ server, client []float64 }
	per := make([]MeasuredFn, len(tr.Functions))
	pl := make([]lists, len(tr.Functions))
	var all lists
	for i, f := range tr.Functions {
		per[i].Name = f.Name
	}
	for i, o := range out {
		if o.status == 0 && o.err == nil {
			continue // never sent (cancelled)
		}
		fn := tr.Events[i].Fn
		p := &per[fn]
		p.Sent++
		switch {
		case o.throttled:
			p.Throttles++
		case o.errType != "":
			p.Errors++
			if p.ErrorTypes == nil {
				p.ErrorTypes = map[string]int64{}
			}
			p.ErrorTypes[o.errType]++
		default:
			if o.cold {
				p.Cold++
			} else {
				p.Warm++
			}
			p.BilledMs += o.billedMs
			pl[fn].server = append(pl[fn].server, o.serverMs)
			pl[fn].client = append(pl[fn].client, o.clientMs)
			all.server = append(all.server, o.serverMs)
			all.client = append(all.client, o.clientMs)
		}
	}
	m.Total = MeasuredFn{Name: "TOTAL"}
	for i := range per {
		p := &per[i]
		p.P50Ms, p.P99Ms = sortedRank(pl[i].server)
		p.ClientP50Ms, p.ClientP99Ms = sortedRank(pl[i].client)
		t := &m.Total
		t.Sent, t.Cold, t.Warm, t.Throttles, t.Errors = t.Sent+p.Sent, t.Cold+p.Cold, t.Warm+p.Warm, t.Throttles+p.Throttles, t.Errors+p.Errors
		t.BilledMs += p.BilledMs
		for k, n := range p.ErrorTypes {
			if t.ErrorTypes == nil {
				t.ErrorTypes = map[string]int64{}
			}
			t.ErrorTypes[k] += n
		}
	}
	m.Total.P50Ms, m.Total.P99Ms = sortedRank(all.server)
	m.Total.ClientP50Ms, m.Total.ClientP99Ms = sortedRank(all.client)
	m.Functions = per
}

func sortedRank(v []float64) (float64, float64) {
	slices.Sort(v)
	return nearestRank(v)
}

// WriteComparison prints the simulated and the measured figures side by side.
func WriteComparison(w io.Writer, sim *Result, m *Measured) {
	s, l := &sim.Total, &m.Total
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tsimulated\tmeasured\tdifference\t")
	ints := []struct {
		name string
		a, b int64
	}{
		{"requests", s.Invocations, l.Sent}, {"cold starts", s.Cold, l.Cold}, {"warm starts", s.Warm, l.Warm},
		{"throttles", s.Throttles, l.Throttles},
	}
	for _, r := range ints {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", r.name, r.a, r.b, diff(float64(r.a), float64(r.b)))
	}
	fmt.Fprintf(tw, "errors\t-\t%d\t\t\n", l.Errors)
	fmt.Fprintf(tw, "p50 ms (init+handler)\t%s\t%s\t%s\t\n", num(s.P50Ms), num(l.P50Ms), diff(s.P50Ms, l.P50Ms))
	fmt.Fprintf(tw, "p99 ms (init+handler)\t%s\t%s\t%s\t\n", num(s.P99Ms), num(l.P99Ms), diff(s.P99Ms, l.P99Ms))
	fmt.Fprintf(tw, "billed ms\t%s\t%s\t%s\t\n", num(s.BilledMs), num(l.BilledMs), diff(s.BilledMs, l.BilledMs))
	fmt.Fprintf(tw, "client p50 / p99 ms\t-\t%s / %s\t\t\n", num(l.ClientP50Ms), num(l.ClientP99Ms))
	tw.Flush()
	gap := relGap(float64(s.Cold), float64(l.Cold))
	verdict := "within"
	if gap > 0.05 {
		verdict = "NOT within"
	}
	fmt.Fprintf(w, "F2: measured cold starts are %s 5%% of the simulation (gap %.1f%%)", verdict, 100*gap)
	if m.Late > 0 {
		fmt.Fprintf(w, "; %d requests left more than 10 ms late", m.Late)
	}
	fmt.Fprintln(w)
	for _, n := range m.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func relGap(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(b-a) / math.Max(math.Abs(a), 1)
}

func diff(a, b float64) string {
	if a == b {
		return "0"
	}
	if a == 0 {
		return fmt.Sprintf("%+g", b)
	}
	return fmt.Sprintf("%+.1f%%", 100*(b-a)/a)
}
