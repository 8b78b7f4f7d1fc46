package sim

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// The Azure Functions 2019 trace (Shahrad et al., ATC 2020) gives, per
// function and day, the invocation count of each minute
// (HashOwner,HashApp,HashFunction,Trigger,1..1440) and, in a second file,
// duration percentiles in ms
// (HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,
// percentile_Average_0,_1,_25,_50,_75,_99,_100).

// AzureOptions controls how per-minute counts become arrivals.
type AzureOptions struct {
	Seed    uint64  // spreads each minute's count; same seed, same trace
	Limit   int     // read only the first Limit functions (0: all)
	Handler Handler // durations of functions missing from the durations file
}

// maxEvents bounds a trace in memory (24 bytes an event).
const maxEvents = 200_000_000

var azureKeys = []string{"HashOwner", "HashApp", "HashFunction"}

// ReadAzure reads an Azure invocations file and, if durations is not nil, its
// durations file. Each minute's count is spread uniformly at random within
// the minute, from a stream seeded by the seed and the function's hash, so
// the result does not depend on row order.
func ReadAzure(inv io.Reader, invName string, durations io.Reader, durName string, opt AzureOptions) (*Trace, error) {
	var dur map[string]Handler
	if durations != nil {
		var err error
		if dur, err = readAzureDurations(durations, durName); err != nil {
			return nil, err
		}
	}
	sc := bufio.NewScanner(inv)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	a := azureReader{source: invName, opt: opt, dur: dur, tr: &Trace{}}
	for sc.Scan() {
		a.line++
		if err := a.row(strings.TrimRight(sc.Text(), "\r")); err != nil {
			return nil, err
		}
		if opt.Limit > 0 && len(a.tr.Functions) >= opt.Limit {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Source: invName, Line: a.line + 1, Err: fmt.Errorf("%w: %v", ErrValue, err)}
	}
	if a.minutes == 0 {
		return nil, &ParseError{Source: invName, Line: 1, Err: fmt.Errorf("%w: missing header HashOwner,HashApp,HashFunction,Trigger,1,2,...", ErrHeader)}
	}
	sortEvents(a.tr.Events)
	return a.tr, nil
}

type azureReader struct {
	source  string
	line    int
	minutes int
	opt     AzureOptions
	dur     map[string]Handler
	tr      *Trace
	fields  []string
	offsets []float64
}

func (a *azureReader) fail(field string, err error) error {
	return &ParseError{Source: a.source, Line: a.line, Field: field, Err: err}
}

func (a *azureReader) header(line string) error {
	h := strings.Split(line, ",")
	want := append(slices.Clone(azureKeys), "Trigger")
	if len(h) < 5 {
		return a.fail("", fmt.Errorf("%w: want %s,1,2,...", ErrHeader, strings.Join(want, ",")))
	}
	for i, w := range want {
		if strings.TrimSpace(strings.TrimPrefix(h[i], "\ufeff")) != w {
			return a.fail("", fmt.Errorf("%w: column %d is %q, want %q", ErrHeader, i+1, h[i], w))
		}
	}
	for i, m := range h[4:] {
		if strings.TrimSpace(m) != strconv.Itoa(i+1) {
			return a.fail("", fmt.Errorf("%w: minute column %d is %q, want %d", ErrHeader, i+5, m, i+1))
		}
	}
	a.minutes = len(h) - 4
	return nil
}

func (a *azureReader) row(line string) error {
	if strings.TrimSpace(line) == "" {
		return nil
	}
	if a.minutes == 0 {
		return a.header(line)
	}
	a.fields = strings.Split(line, ",")
	if len(a.fields) != a.minutes+4 {
		return a.fail("", fmt.Errorf("%w: got %d, want %d", ErrFields, len(a.fields), a.minutes+4))
	}
	for i := 0; i < 3; i++ {
		if err := checkName(a.fields[i]); err != nil {
			return a.fail(azureKeys[i], err)
		}
	}
	fn := int32(len(a.tr.Functions))
	owner, app, name := a.fields[0], a.fields[1], a.fields[2]
	a.tr.Functions = append(a.tr.Functions, Function{Name: name, App: app, Account: owner})
	h := a.handler(owner, app, name)
	r := rand.New(rand.NewPCG(a.opt.Seed, hashKey(owner, app, name)))
	for m := 0; m < a.minutes; m++ {
		if err := a.minute(r, fn, m, h); err != nil {
			return err
		}
	}
	return nil
}

// minute spreads one minute's count within the minute.
func (a *azureReader) minute(r *rand.Rand, fn int32, m int, h Handler) error {
	s := strings.TrimSpace(a.fields[m+4])
	if s == "" || s == "0" {
		return nil
	}
	c, err := strconv.Atoi(s)
	if err != nil || c < 0 {
		return a.fail(strconv.Itoa(m+1), fmt.Errorf("%w: count %q is not a non-negative integer", ErrValue, s))
	}
	if len(a.tr.Events)+c > maxEvents {
		return a.fail(strconv.Itoa(m+1), fmt.Errorf("%w: more than %d invocations; use --azure-limit", ErrValue, maxEvents))
	}
	a.offsets = a.offsets[:0]
	for i := 0; i < c; i++ {
		a.offsets = append(a.offsets, r.Float64()*60)
	}
	slices.Sort(a.offsets)
	base := float64(m) * 60
	for _, off := range a.offsets {
		a.tr.Events = append(a.tr.Events, Event{T: base + off, DurMs: h.DrawMs(r), Fn: fn})
	}
	return nil
}

func (a *azureReader) handler(owner, app, name string) Handler {
	if h, ok := a.dur[owner+","+app+","+name]; ok {
		return h
	}
	return a.opt.Handler
}

func hashKey(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// azurePercentiles are the durations file's percentile columns.
var azurePercentiles = []struct {
	col string
	q   float64
}{
	{"percentile_Average_0", 0}, {"percentile_Average_1", 0.01}, {"percentile_Average_25", 0.25},
	{"percentile_Average_50", 0.5}, {"percentile_Average_75", 0.75}, {"percentile_Average_99", 0.99},
	{"percentile_Average_100", 1},
}

// percentileHandler draws from the piecewise-linear inverse CDF through the
// published percentiles.
type percentileHandler struct{ ms [7]float64 }

func (h *percentileHandler) DrawMs(r *rand.Rand) float64 {
	u := r.Float64()
	for i := 1; i < len(azurePercentiles); i++ {
		q0, q1 := azurePercentiles[i-1].q, azurePercentiles[i].q
		if u <= q1 {
			return h.ms[i-1] + (h.ms[i]-h.ms[i-1])*(u-q0)/(q1-q0)
		}
	}
	return h.ms[len(h.ms)-1]
}

func readAzureDurations(r io.Reader, source string) (map[string]Handler, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	out := map[string]Handler{}
	var cols []int // positions of the keys then the percentiles
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		f := strings.Split(text, ",")
		if cols == nil {
			var err error
			if cols, err = durationColumns(f); err != nil {
				return nil, &ParseError{Source: source, Line: line, Err: err}
			}
			continue
		}
		key, h, err := durationRow(f, cols)
		if err != nil {
			return nil, &ParseError{Source: source, Line: line, Err: err}
		}
		out[key] = h
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Source: source, Line: line + 1, Err: fmt.Errorf("%w: %v", ErrValue, err)}
	}
	if cols == nil {
		return nil, &ParseError{Source: source, Line: 1, Err: fmt.Errorf("%w: missing header HashOwner,HashApp,HashFunction,...,percentile_Average_0,...", ErrHeader)}
	}
	return out, nil
}

func durationColumns(h []string) ([]int, error) {
	var cols []int
	find := func(name string) error {
		for i, c := range h {
			if strings.TrimSpace(strings.TrimPrefix(c, "\ufeff")) == name {
				cols = append(cols, i)
				return nil
			}
		}
		return fmt.Errorf("%w: missing column %q", ErrHeader, name)
	}
	for _, k := range azureKeys {
		if err := find(k); err != nil {
			return nil, err
		}
	}
	for _, p := range azurePercentiles {
		if err := find(p.col); err != nil {
			return nil, err
		}
	}
	return append(cols, len(h)), nil
}

func durationRow(f []string, cols []int) (string, Handler, error) {
	if len(f) != cols[len(cols)-1] {
		return "", nil, fmt.Errorf("%w: got %d, want %d", ErrFields, len(f), cols[len(cols)-1])
	}
	h := &percentileHandler{}
	for i := range azurePercentiles {
		v, err := parseMs(strings.TrimSpace(f[cols[3+i]]))
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", azurePercentiles[i].col, err)
		}
		if i > 0 && v < h.ms[i-1] {
			return "", nil, fmt.Errorf("%w: %s: %g is below the previous percentile %g", ErrValue, azurePercentiles[i].col, v, h.ms[i-1])
		}
		h.ms[i] = v
	}
	return f[cols[0]] + "," + f[cols[1]] + "," + f[cols[2]], h, nil
}
