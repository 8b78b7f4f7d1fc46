// Package sim is coldstart's capacity planner: a discrete-event simulator that
// replays an invocation trace through the same quota and sandbox-pool policy
// code as the workers and placement, on a virtual clock. See DESIGN.md.
package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Function is one function of a trace.
type Function struct {
	Name     string
	App      string // keep-alive histograms are kept per app (Azure HashApp; else the name)
	Account  string // the account whose concurrency limit it draws on
	MemoryMB int    // 0: the run's default memory
}

// Event is one invocation request.
type Event struct {
	// T is the arrival in seconds since the trace's epoch. It is the float
	// nearest the trace's decimal time_ms/1000, which is exactly the float the
	// seed's Python simulator held when it wrote the trace.
	T     float64
	DurMs float64 // handler duration, ms
	Fn    int32   // index into Trace.Functions
}

// Trace is a list of invocation requests ordered by arrival.
type Trace struct {
	Functions []Function
	Events    []Event // sorted by T; equal times keep their input order
}

// End is the arrival time of the last event, in seconds.
func (t *Trace) End() float64 {
	if len(t.Events) == 0 {
		return 0
	}
	return t.Events[len(t.Events)-1].T
}

// Errors wrapped by ParseError, for callers that branch on the kind.
var (
	ErrHeader   = errors.New("bad header")
	ErrFields   = errors.New("wrong number of fields")
	ErrValue    = errors.New("bad value")
	ErrConflict = errors.New("conflicting value")
	ErrEmpty    = errors.New("no invocations")
)

// ParseError locates a bad input line.
type ParseError struct {
	Source string // file name or "trace"
	Line   int    // 1-based
	Field  string // column name, if one is at fault
	Err    error
}

func (e *ParseError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s:%d: %s: %v", e.Source, e.Line, e.Field, e.Err)
	}
	return fmt.Sprintf("%s:%d: %v", e.Source, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// maxTimeMs bounds arrival times so that they fit a time.Duration (292 years)
// with room for the handler and keep-alive added to them.
const maxTimeMs = 1e13

// maxLine bounds one CSV line; Azure rows with 1440 counts fit easily.
const maxLine = 1 << 20

// csvColumns are the trace columns; memory_mb is optional.
var csvColumns = []string{"time_ms", "function", "duration_ms", "memory_mb"}

// ReadCSV reads a trace `time_ms,function,duration_ms[,memory_mb]` with a
// header line. Blank lines and lines starting with # are skipped. Rows need not
// be sorted; equal times keep file order, as the seed replays them.
func ReadCSV(r io.Reader, source string) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	p := csvParser{source: source, fnIdx: map[string]int32{}}
	for sc.Scan() {
		p.line++
		if err := p.row(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Source: source, Line: p.line + 1, Err: fmt.Errorf("%w: %v", ErrValue, err)}
	}
	if p.cols == nil {
		return nil, &ParseError{Source: source, Line: 1, Err: fmt.Errorf("%w: missing header time_ms,function,duration_ms[,memory_mb]", ErrHeader)}
	}
	sortEvents(p.tr.Events)
	return &p.tr, nil
}

type csvParser struct {
	source string
	line   int
	cols   []int // position of time_ms, function, duration_ms, memory_mb (-1 absent)
	ncols  int
	fnIdx  map[string]int32
	tr     Trace
}

func (p *csvParser) fail(field string, err error) error {
	return &ParseError{Source: p.source, Line: p.line, Field: field, Err: err}
}

func (p *csvParser) row(line string) error {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	if p.cols == nil {
		return p.header(line)
	}
	var f [4]string
	n := splitFields(line, f[:])
	if n != p.ncols {
		return p.fail("", fmt.Errorf("%w: got %d, want %d", ErrFields, n, p.ncols))
	}
	t, err := parseTimeMs(strings.TrimSpace(f[p.cols[0]]))
	if err != nil {
		return p.fail("time_ms", err)
	}
	d, err := parseMs(strings.TrimSpace(f[p.cols[2]]))
	if err != nil {
		return p.fail("duration_ms", err)
	}
	fn, err := p.function(strings.TrimSpace(f[p.cols[1]]))
	if err != nil {
		return err
	}
	if p.cols[3] >= 0 {
		if err := p.memory(fn, strings.TrimSpace(f[p.cols[3]])); err != nil {
			return err
		}
	}
	p.tr.Events = append(p.tr.Events, Event{T: t, DurMs: d, Fn: fn})
	return nil
}

// splitFields splits on commas into out and returns the field count (which
// may exceed len(out); the extra fields are not stored).
func splitFields(line string, out []string) int {
	n := 0
	for {
		i := strings.IndexByte(line, ',')
		if n < len(out) {
			if i < 0 {
				out[n] = line
			} else {
				out[n] = line[:i]
			}
		}
		n++
		if i < 0 {
			return n
		}
		line = line[i+1:]
	}
}

func (p *csvParser) header(line string) error {
	names := strings.Split(line, ",")
	p.cols = []int{-1, -1, -1, -1}
	for i, raw := range names {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(raw, "\ufeff")))
		k := indexOf(csvColumns, name)
		if k < 0 {
			return p.fail("", fmt.Errorf("%w: unknown column %q (want time_ms,function,duration_ms[,memory_mb])", ErrHeader, name))
		}
		if p.cols[k] >= 0 {
			return p.fail("", fmt.Errorf("%w: column %q twice", ErrHeader, name))
		}
		p.cols[k] = i
	}
	for k := 0; k < 3; k++ {
		if p.cols[k] < 0 {
			return p.fail("", fmt.Errorf("%w: missing column %q", ErrHeader, csvColumns[k]))
		}
	}
	p.ncols = len(names)
	return nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func (p *csvParser) function(name string) (int32, error) {
	if i, ok := p.fnIdx[name]; ok {
		return i, nil
	}
	if err := checkName(name); err != nil {
		return 0, p.fail("function", err)
	}
	i := int32(len(p.tr.Functions))
	p.fnIdx[name] = i
	p.tr.Functions = append(p.tr.Functions, Function{Name: name, App: name, Account: DefaultAccount})
	return i, nil
}

func (p *csvParser) memory(fn int32, s string) error {
	if s == "" {
		return nil
	}
	mb, err := strconv.Atoi(s)
	if err != nil || mb < MinMemoryMB || mb > MaxMemoryMB {
		return p.fail("memory_mb", fmt.Errorf("%w: %q is not an integer from %d to %d", ErrValue, s, MinMemoryMB, MaxMemoryMB))
	}
	f := &p.tr.Functions[fn]
	if f.MemoryMB != 0 && f.MemoryMB != mb {
		return p.fail("memory_mb", fmt.Errorf("%w: %d for %q, which earlier rows gave %d", ErrConflict, mb, f.Name, f.MemoryMB))
	}
	f.MemoryMB = mb
	return nil
}

// DefaultAccount is the account of traces that name none.
const DefaultAccount = "default"

// Lambda's memory bounds (CreateFunction MemorySize).
const (
	MinMemoryMB = 128
	MaxMemoryMB = 10240
)

// checkName accepts Lambda function names and Azure hashes: 1-256 characters
// with no separators, quotes or control characters.
func checkName(s string) error {
	if s == "" || len(s) > 256 {
		return fmt.Errorf("%w: function name must have 1 to 256 characters", ErrValue)
	}
	for _, c := range s {
		if c <= ' ' || c == '"' || c == ',' || c == 0x7f || c == '\ufffd' {
			return fmt.Errorf("%w: function name %q has a character that is not allowed", ErrValue, s)
		}
	}
	return nil
}

// sortEvents orders events by time, keeping input order for ties; most
// traces are already sorted, which costs one pass.
func sortEvents(ev []Event) {
	if sort.SliceIsSorted(ev, func(i, j int) bool { return ev[i].T < ev[j].T }) {
		return
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].T < ev[j].T })
}

// parseTimeMs converts a decimal millisecond string to seconds by moving the
// decimal exponent, so the result is the float nearest the exact decimal
// value. Parsing the milliseconds and dividing by 1000 would round twice and
// could land one ulp away from the seed's arrival time.
func parseTimeMs(s string) (float64, error) {
	mant, exp, err := splitDecimal(s)
	if err != nil {
		return 0, err
	}
	v, perr := strconv.ParseFloat(mant+"e"+strconv.Itoa(exp-3), 64)
	if perr != nil || v < 0 || v*1000 > maxTimeMs || math.IsNaN(v) {
		return 0, fmt.Errorf("%w: %q is not a time from 0 to %g ms", ErrValue, s, float64(maxTimeMs))
	}
	return v, nil
}

// parseMs parses a non-negative decimal number of milliseconds.
func parseMs(s string) (float64, error) {
	if _, _, err := splitDecimal(s); err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > maxTimeMs {
		return 0, fmt.Errorf("%w: %q is not a duration from 0 to %g ms", ErrValue, s, float64(maxTimeMs))
	}
	return v, nil
}

// splitDecimal checks that s is a plain decimal number
// ([+]digits[.digits][e[+-]digits], no hex, inf, nan or '_') and returns
// its mantissa and exponent.
func splitDecimal(s string) (mant string, exp int, err error) {
	bad := errNotDecimal{s}
	m, e := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		m, e = s[:i], s[i+1:]
	}
	m = strings.TrimPrefix(m, "+")
	digits, dots := 0, 0
	for _, c := range m {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return "", 0, bad
		}
	}
	if digits == 0 || dots > 1 {
		return "", 0, bad
	}
	if e != "" {
		x, perr := strconv.Atoi(e)
		if perr != nil || x < -400 || x > 400 || strings.ContainsAny(e, "_") {
			return "", 0, bad
		}
		exp = x
	}
	return m, exp, nil
}

// errNotDecimal is built only on failure: parsing a million-line trace must
// not format an error per field.
type errNotDecimal struct{ s string }

func (e errNotDecimal) Error() string {
	return fmt.Sprintf("%v: %q is not a non-negative decimal number", ErrValue, e.s)
}

func (e errNotDecimal) Unwrap() error { return ErrValue }

// formatScaled writes x*10^shift as a plain decimal string without rounding:
// the shortest repr of x, with its decimal point moved. It is the inverse of
// parseTimeMs for shift 3.
func formatScaled(x float64, shift int) string {
	if x == 0 {
		return "0"
	}
	s := strconv.FormatFloat(x, 'e', -1, 64) // d.ddde±XX
	i := strings.IndexByte(s, 'e')
	digits := strings.Replace(s[:i], ".", "", 1)
	e, _ := strconv.Atoi(s[i+1:])
	point := e + 1 + shift // digits before the decimal point
	switch {
	case point <= 0:
		return "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		return digits + strings.Repeat("0", point-len(digits))
	}
	return digits[:point] + "." + digits[point:]
}

// WriteCSV writes tr in the format ReadCSV reads, so that a written trace
// replays to exactly the same floats.
func WriteCSV(w io.Writer, tr *Trace) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	withMem := false
	for _, f := range tr.Functions {
		withMem = withMem || f.MemoryMB != 0
	}
	if withMem {
		bw.WriteString("time_ms,function,duration_ms,memory_mb\n")
	} else {
		bw.WriteString("time_ms,function,duration_ms\n")
	}
	var buf []byte
	for _, e := range tr.Events {
		f := tr.Functions[e.Fn]
		buf = append(buf[:0], formatScaled(e.T, 3)...)
		buf = append(buf, ',')
		buf = append(buf, f.Name...)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, e.DurMs, 'f', -1, 64)
		if withMem {
			buf = append(buf, ',')
			if f.MemoryMB != 0 {
				buf = strconv.AppendInt(buf, int64(f.MemoryMB), 10)
			}
		}
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}
