package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coldstart-dev/coldstart/internal/api"
	"github.com/coldstart-dev/coldstart/internal/client"
)

// Summary is the result of a load run; its JSON form is `coldstart load --json`.
//
// Counting rules: invocations = requests sent = ok + throttled + errors +
// canceled. Arrivals that found the concurrency cap reached were never sent
// and are only in dropped (offered = invocations + dropped). Cold and warm
// count every request that reached a sandbox (ok or function error); a
// gateway that does not send X-Coldstart-Cold makes everything warm.
// Latencies are of ok requests, measured from the scheduled send time.
type Summary struct {
	Function    string  `json:"function"`
	Shape       string  `json:"shape"`
	ShapeDesc   string  `json:"shape_desc"`
	Arrivals    string  `json:"arrivals"`
	Rate        float64 `json:"rate"`
	DurationS   float64 `json:"duration_s"`
	ElapsedS    float64 `json:"elapsed_s"`
	Seed        int64   `json:"seed"`
	Concurrency int     `json:"concurrency"`

	Offered           int64            `json:"offered"`
	Invocations       int64            `json:"invocations"`
	Dropped           int64            `json:"dropped"`
	OK                int64            `json:"ok"`
	Cold              int64            `json:"cold"`
	Warm              int64            `json:"warm"`
	Throttled         int64            `json:"throttled"`
	ThrottledByReason map[string]int64 `json:"throttled_by_reason"`
	Errors            int64            `json:"errors"`
	ErrorsByType      map[string]int64 `json:"errors_by_type"`
	Canceled          int64            `json:"canceled"`

	Latency     Percentiles `json:"latency_ms"`      // ok requests
	ColdLatency Percentiles `json:"cold_latency_ms"` // ok cold requests
	WarmLatency Percentiles `json:"warm_latency_ms"` // ok warm requests
	InitMs      Percentiles `json:"init_ms"`         // platform-reported cold-start time
	ServerMs    Percentiles `json:"server_ms"`       // platform-reported init + handler time (the seed's "duration")

	OfferedRPS   float64 `json:"offered_rps"`  // offered / load window
	AchievedRPS  float64 `json:"achieved_rps"` // invocations sent / load window
	OKRPS        float64 `json:"ok_rps"`       // ok / elapsed
	MaxSendLagMs float64 `json:"max_send_lag_ms"`
	LateSends    int64   `json:"late_sends"` // sent over 5 ms after their scheduled time
	Interrupted  bool    `json:"interrupted"`
	Approximate  bool    `json:"approximate_percentiles,omitempty"`

	Records             int  `json:"records,omitempty"`
	AvoidableColdStarts *int `json:"avoidable_cold_starts,omitempty"`
}

// AddRecords counts, from the workers' records of the run, the cold starts
// that an idle sandbox could have served (see AvoidableColdStarts).
func (s *Summary) AddRecords(records []api.Record, slack time.Duration) {
	n := AvoidableColdStarts(records, slack)
	s.Records = len(records)
	s.AvoidableColdStarts = &n
}

func (s *Summary) fillRates(window, elapsed time.Duration) {
	if w := window.Seconds(); w > 0 {
		s.OfferedRPS = float64(s.Offered) / w
		s.AchievedRPS = float64(s.Invocations) / w
	}
	if e := elapsed.Seconds(); e > 0 {
		s.OKRPS = float64(s.OK) / e
	}
}

// outcome is one finished request as the tally sees it.
type outcome struct {
	latency  time.Duration
	res      Result
	err      error
	canceled bool // canceled by the run (interrupt or drain timeout), not failed
}

// tally accumulates outcomes; it is the pure core of the summary.
type tally struct {
	mu                                          sync.Mutex
	ok, cold, warm, throttled, errors, canceled int64
	throttledBy, errorsBy                       map[string]int64
	lat, coldLat, warmLat, initMs, serverMs     series
}

func newTally() *tally {
	return &tally{throttledBy: map[string]int64{}, errorsBy: map[string]int64{}}
}

func (t *tally) record(o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o.err != nil {
		if o.canceled {
			t.canceled++
			return
		}
		throttled, key := Classify(o.err)
		if throttled {
			t.throttled++
			t.throttledBy[key]++
		} else {
			t.errors++
			t.errorsBy[key]++
		}
		return
	}
	r := o.res
	if r.Cold {
		t.cold++
		if r.InitMs > 0 {
			t.initMs.add(msDur(r.InitMs))
		}
	} else {
		t.warm++
	}
	if r.FunctionError != "" {
		t.errors++
		t.errorsBy[functionErrorKey(r)]++
		return
	}
	t.ok++
	t.lat.add(o.latency)
	if r.Cold {
		t.coldLat.add(o.latency)
	} else {
		t.warmLat.add(o.latency)
	}
	if r.InitMs > 0 || r.DurationMs > 0 {
		t.serverMs.add(msDur(r.InitMs + r.DurationMs))
	}
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func functionErrorKey(r Result) string {
	if r.ErrorType != "" {
		return "function:" + r.ErrorType
	}
	return "function:" + r.FunctionError
}

// Classify sorts a failed invocation: a throttle with its Reason, or an
// error with its type (the exception name for API errors; ClientTimeout,
// ConnectionRefused, ConnectionReset or NetworkError for the client's own).
func Classify(err error) (throttled bool, key string) {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		if ae.IsThrottle() {
			if ae.Reason == "" {
				return true, "(no reason)"
			}
			return true, ae.Reason
		}
		return false, ae.Type
	case errors.Is(err, context.DeadlineExceeded):
		return false, "ClientTimeout"
	case errors.Is(err, context.Canceled):
		return false, "Canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return false, "ConnectionRefused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, "ConnectionReset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, "ClientTimeout"
	}
	return false, "NetworkError"
}

// summary turns the tally into a Summary (percentiles sorted once, here).
func (t *tally) summary(cfg Config, window, elapsed time.Duration) *Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Summary{
		Function:          cfg.Function,
		Shape:             cfg.Shape.Kind,
		ShapeDesc:         cfg.Shape.String(),
		Arrivals:          cfg.Arrivals,
		Rate:              cfg.Shape.Rate,
		DurationS:         cfg.Duration.Seconds(),
		ElapsedS:          elapsed.Seconds(),
		Seed:              cfg.Seed,
		Concurrency:       cfg.Concurrency,
		OK:                t.ok,
		Cold:              t.cold,
		Warm:              t.warm,
		Throttled:         t.throttled,
		ThrottledByReason: copyMap(t.throttledBy),
		Errors:            t.errors,
		ErrorsByType:      copyMap(t.errorsBy),
		Canceled:          t.canceled,
		Latency:           t.lat.percentiles(),
		ColdLatency:       t.coldLat.percentiles(),
		WarmLatency:       t.warmLat.percentiles(),
		InitMs:            t.initMs.percentiles(),
		ServerMs:          t.serverMs.percentiles(),
		Approximate:       t.lat.overflow,
	}
	s.Invocations = t.ok + t.throttled + t.errors + t.canceled
	s.Offered = s.Invocations
	s.fillRates(window, elapsed)
	return s
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// WriteTable prints the summary as the table `coldstart load` ends with.
func (s *Summary) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "coldstart load: %s, %s for %s (%s arrivals, seed %d, concurrency %d)\n",
		s.Function, s.ShapeDesc, time.Duration(s.DurationS*float64(time.Second)), s.Arrivals, s.Seed, s.Concurrency)
	if s.Interrupted {
		b.WriteString("interrupted: the numbers cover the part that ran\n")
	}
	b.WriteString("\n")

	counts := client.Table{Right: []bool{false, true, false}}
	add := func(cells ...string) { counts.Rows = append(counts.Rows, cells) }
	add("invocations", itoa(s.Invocations), fmt.Sprintf("(offered %d, dropped %d at the concurrency cap)", s.Offered, s.Dropped))
	add("ok", itoa(s.OK), pct(s.OK, s.Invocations))
	add("cold", itoa(s.Cold), pct(s.Cold, s.Cold+s.Warm))
	add("warm", itoa(s.Warm), pct(s.Warm, s.Cold+s.Warm))
	add("throttled", itoa(s.Throttled), pct(s.Throttled, s.Invocations))
	for _, k := range sortedKeys(s.ThrottledByReason) {
		add("  "+k, itoa(s.ThrottledByReason[k]), "")
	}
	add("errors", itoa(s.Errors), pct(s.Errors, s.Invocations))
	for _, k := range sortedKeys(s.ErrorsByType) {
		add("  "+k, itoa(s.ErrorsByType[k]), "")
	}
	if s.Canceled > 0 {
		add("canceled", itoa(s.Canceled), "(still in flight when the run ended)")
	}
	if s.AvoidableColdStarts != nil {
		add("avoidable cold", strconv.Itoa(*s.AvoidableColdStarts), fmt.Sprintf("(an idle sandbox of the version existed; from %d records)", s.Records))
	}
	// The table's header row is empty; drop the blank line it would print.
	counts.Header = counts.Rows[0]
	counts.Rows = counts.Rows[1:]
	counts.Write(&b)
	b.WriteString("\n")

	approx := ""
	if s.Approximate {
		approx = " (histogram, <0.4% error)"
	}
	lat := client.Table{
		Header: []string{"latency ms" + approx, "n", "p50", "p90", "p99", "max", "mean"},
		Right:  []bool{false, true, true, true, true, true, true},
	}
	row := func(name string, p Percentiles) {
		if p.N == 0 {
			lat.Rows = append(lat.Rows, []string{name, "0", "-", "-", "-", "-", "-"})
			return
		}
		lat.Rows = append(lat.Rows, []string{name, itoa(p.N), msStr(p.P50), msStr(p.P90), msStr(p.P99), msStr(p.Max), msStr(p.Mean)})
	}
	row("ok (from scheduled send)", s.Latency)
	row("  cold", s.ColdLatency)
	row("  warm", s.WarmLatency)
	row("platform init (cold)", s.InitMs)
	row("platform init+handler", s.ServerMs)
	lat.Write(&b)
	b.WriteString("\n")

	fmt.Fprintf(&b, "rate: offered %s/s, sent %s/s, ok %s/s; elapsed %.1fs\n",
		num(s.OfferedRPS), num(s.AchievedRPS), num(s.OKRPS), s.ElapsedS)
	if s.LateSends > 0 {
		fmt.Fprintf(&b, "generator lag: %d sends over 5 ms late (max %.1f ms): the generator is short of CPU; their latency counts from the scheduled time\n",
			s.LateSends, s.MaxSendLagMs)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func pct(n, of int64) string {
	if of <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

func msStr(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}
