package synthetic

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// ---------------------------------------------------------------------------
// ParseDist

func TestParseDistValid(t *testing.T) {
	tests := []struct {
		in   string
		want Dist
	}{
		{"80ms", Dist{Kind: Fixed, A: 80 * ms}},
		{"0", Dist{Kind: Fixed}},
		{"0s", Dist{Kind: Fixed}},
		{"-0s", Dist{Kind: Fixed}},
		{"1.5s", Dist{Kind: Fixed, A: 1500 * ms}},
		{"1h2m", Dist{Kind: Fixed, A: time.Hour + 2*time.Minute}},
		{"  80ms\n", Dist{Kind: Fixed, A: 80 * ms}},
		{"fixed:80ms", Dist{Kind: Fixed, A: 80 * ms}},
		{"fixed:0s", Dist{Kind: Fixed}},
		{"uniform:50ms:150ms", Dist{Kind: Uniform, A: 50 * ms, B: 150 * ms}},
		{"uniform:5ms:5ms", Dist{Kind: Uniform, A: 5 * ms, B: 5 * ms}},
		{"uniform:0s:1us", Dist{Kind: Uniform, B: time.Microsecond}},
		{"normal:100ms:20ms", Dist{Kind: Normal, A: 100 * ms, B: 20 * ms}},
		{"normal:100ms:0s", Dist{Kind: Normal, A: 100 * ms}},
		{"normal:10ms:1s", Dist{Kind: Normal, A: 10 * ms, B: time.Second}}, // sd > mean is allowed: draws clamp at 0
		{"lognormal:100ms:0.5", Dist{Kind: LogNormal, A: 100 * ms, Sigma: 0.5}},
		{"lognormal:100ms:0", Dist{Kind: LogNormal, A: 100 * ms}},
		{"lognormal:100ms:2", Dist{Kind: LogNormal, A: 100 * ms, Sigma: 2}},
		{"lognormal:1s:1e-3", Dist{Kind: LogNormal, A: time.Second, Sigma: 0.001}},
		{" lognormal:100ms:0.25 ", Dist{Kind: LogNormal, A: 100 * ms, Sigma: 0.25}},
	}
	for _, tc := range tests {
		got, err := ParseDist(tc.in)
		if err != nil {
			t.Errorf("ParseDist(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseDist(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseDistInvalid(t *testing.T) {
	for _, in := range []string{
		"", " ", "abc", "80", "-5ms", "fixed", "fixed:", "fixed:-1ms", "fixed:80ms:90ms", "fixed:abc",
		"uniform:150ms:50ms", "uniform:50ms", "uniform:50ms:150ms:1s", "uniform::1s", "uniform:1s:",
		"uniform:-1ms:5ms", "uniform: 50ms:150ms",
		"normal:-1ms:2ms", "normal:1ms:-2ms", "normal:100ms", "normal:1ms:abc",
		"lognormal:100ms", "lognormal:100ms:-0.5", "lognormal:100ms:NaN", "lognormal:100ms:nan",
		"lognormal:100ms:Inf", "lognormal:100ms:+Inf", "lognormal:100ms:-Inf", "lognormal:100ms:1e400",
		"lognormal:100ms:abc", "lognormal:100ms:", "lognormal:-1ms:0.5", "lognormal:100ms:0.5:1",
		"gamma:1ms:2ms", "Uniform:1ms:2ms", "FIXED:1ms", "80ms:90ms", ":", "::", "9999999999999h",
		"exponential:10ms",
	} {
		d, err := ParseDist(in)
		if err == nil {
			t.Errorf("ParseDist(%q) = %+v, want an error", in, d)
			continue
		}
		if !errors.Is(err, ErrBadDist) {
			t.Errorf("ParseDist(%q) error %v does not wrap ErrBadDist", in, err)
		}
		// The message names the input so a bad flag is easy to find.
		if !strings.Contains(err.Error(), ErrBadDist.Error()) || !strings.Contains(err.Error(), strings.TrimSpace(in)) {
			t.Errorf("ParseDist(%q) error %q does not quote the input", in, err)
		}
	}
}

func TestDistStringRoundTrip(t *testing.T) {
	for _, d := range []Dist{
		FixedDist(80 * ms),
		FixedDist(0),
		FixedDist(time.Hour + time.Nanosecond),
		{Kind: Uniform, A: 10 * ms, B: 80 * ms},
		{Kind: Normal, A: 100 * ms, B: 20 * ms},
		{Kind: LogNormal, A: 53333333, Sigma: 0.25},
		{Kind: LogNormal, A: 100 * ms, Sigma: 1.0 / 3},
		{Kind: LogNormal, A: 100 * ms, Sigma: 1e-20},
	} {
		got, err := ParseDist(d.String())
		if err != nil || got != d {
			t.Errorf("ParseDist(%q) = %+v, %v; want %+v", d.String(), got, err, d)
		}
	}
	if s := (Dist{Kind: Uniform, A: 10 * ms, B: 80 * ms}).String(); s != "uniform:10ms:80ms" {
		t.Errorf("String = %q", s)
	}
	if s := FixedDist(80 * ms).String(); s != "80ms" {
		t.Errorf("String = %q", s)
	}
}

// ---------------------------------------------------------------------------
// Draw

type sample []time.Duration

func draw(d Dist, n int, seed uint64) sample {
	r := newRand(seed)
	out := make(sample, n)
	for i := range out {
		out[i] = d.Draw(r)
	}
	return out
}

func (s sample) mean() float64 {
	sum := 0.0
	for _, v := range s {
		sum += float64(v)
	}
	return sum / float64(len(s))
}

func (s sample) sd() float64 {
	m, ss := s.mean(), 0.0
	for _, v := range s {
		ss += (float64(v) - m) * (float64(v) - m)
	}
	return math.Sqrt(ss / float64(len(s)-1))
}

func (s sample) quantile(q float64) time.Duration {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[int(q*float64(len(c)-1))]
}

func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.4g, want %.4g ± %.2g", what, got, want, tol)
	}
}

func TestDrawFixed(t *testing.T) {
	r := newRand(1)
	for _, d := range []Dist{FixedDist(80 * ms), {Kind: Fixed, A: 1}, {}, {Kind: "unknown", A: 5 * ms}} {
		for i := 0; i < 100; i++ {
			if got := d.Draw(r); got != d.A {
				t.Fatalf("%+v drew %v", d, got)
			}
		}
		if d.Mean() != d.A {
			t.Fatalf("Mean(%+v) = %v", d, d.Mean())
		}
	}
}

func TestDrawUniform(t *testing.T) {
	d := Dist{Kind: Uniform, A: 50 * ms, B: 150 * ms}
	s := draw(d, 50000, 2)
	for _, v := range s {
		if v < d.A || v > d.B {
			t.Fatalf("draw %v outside [%v, %v]", v, d.A, d.B)
		}
	}
	// Standard error of the mean: (100ms/sqrt 12)/sqrt(50000) ~ 0.13ms.
	within(t, "uniform mean", s.mean(), float64(100*ms), float64(ms))
	within(t, "uniform sd", s.sd(), float64(100*ms)/math.Sqrt(12), float64(ms))
	if d.Mean() != 100*ms {
		t.Errorf("Mean = %v", d.Mean())
	}
	// Degenerate range.
	if v := (Dist{Kind: Uniform, A: 5 * ms, B: 5 * ms}).Draw(newRand(3)); v != 5*ms {
		t.Errorf("uniform [5ms,5ms] drew %v", v)
	}
}

func TestDrawNormal(t *testing.T) {
	d := Dist{Kind: Normal, A: 100 * ms, B: 20 * ms}
	s := draw(d, 50000, 4)
	within(t, "normal mean", s.mean(), float64(100*ms), float64(ms)/2) // SE ~ 0.09ms
	within(t, "normal sd", s.sd(), float64(20*ms), float64(ms)/2)
	within(t, "normal median", float64(s.quantile(0.5)), float64(100*ms), float64(ms)/2)
	if d.Mean() != 100*ms {
		t.Errorf("Mean = %v", d.Mean())
	}
	if v := (Dist{Kind: Normal, A: 7 * ms}).Draw(newRand(5)); v != 7*ms {
		t.Errorf("normal with sd 0 drew %v", v)
	}
}

func TestDrawClampsAtZero(t *testing.T) {
	// Mean 10ms, sd 100ms: P(X < 0) = Phi(-0.1) = 0.4602.
	d := Dist{Kind: Normal, A: 10 * ms, B: 100 * ms}
	s := draw(d, 50000, 6)
	zeros := 0
	for _, v := range s {
		if v < 0 {
			t.Fatalf("negative draw %v", v)
		}
		if v == 0 {
			zeros++
		}
	}
	within(t, "share clamped to 0", float64(zeros)/float64(len(s)), 0.4602, 0.01)
	// All mass below zero.
	for _, v := range draw(Dist{Kind: Normal, A: 0, B: time.Second}, 1000, 7) {
		if v < 0 {
			t.Fatalf("negative draw %v", v)
		}
	}
	// A hand-built negative fixed or uniform distribution also clamps.
	if v := FixedDist(-5 * ms).Draw(newRand(8)); v != 0 {
		t.Errorf("fixed -5ms drew %v", v)
	}
	if v := (Dist{Kind: Uniform, A: -10 * ms, B: -5 * ms}).Draw(newRand(8)); v != 0 {
		t.Errorf("uniform [-10ms,-5ms] drew %v", v)
	}
}

func TestDrawLogNormal(t *testing.T) {
	d := Dist{Kind: LogNormal, A: 100 * ms, Sigma: 0.5}
	s := draw(d, 100000, 9)
	for _, v := range s {
		if v <= 0 {
			t.Fatalf("lognormal drew %v", v)
		}
	}
	want := float64(100*ms) * math.Exp(0.125) // 113.3ms
	if got := float64(d.Mean()); math.Abs(got-want) > 1 {
		t.Errorf("Mean = %v, want %.0f", d.Mean(), want)
	}
	within(t, "lognormal median", float64(s.quantile(0.5)), float64(100*ms), 0.01*float64(100*ms))
	within(t, "lognormal mean", s.mean(), want, 0.01*want)
	// The log of the draws is normal with sd Sigma.
	logs := make([]float64, len(s))
	for i, v := range s {
		logs[i] = math.Log(float64(v) / float64(100*ms))
	}
	m, ss := 0.0, 0.0
	for _, l := range logs {
		m += l
	}
	m /= float64(len(logs))
	for _, l := range logs {
		ss += (l - m) * (l - m)
	}
	within(t, "sd of log", math.Sqrt(ss/float64(len(logs)-1)), 0.5, 0.01)
	if v := (Dist{Kind: LogNormal, A: 42 * ms}).Draw(newRand(10)); v != 42*ms {
		t.Errorf("lognormal sigma 0 drew %v", v)
	}
}

func TestDrawDeterministic(t *testing.T) {
	d := Dist{Kind: LogNormal, A: 100 * ms, Sigma: 0.6}
	if a, b := draw(d, 100, 11), draw(d, 100, 11); !slices.Equal(a, b) {
		t.Fatal("the same seed drew different samples")
	}
	if a, b := draw(d, 100, 11), draw(d, 100, 12); slices.Equal(a, b) {
		t.Fatal("different seeds drew the same samples")
	}
}

// Dist promises "Draws are clamped at zero", and ParseDist accepts every
// distribution below. A draw above the largest time.Duration converts from
// float64 to int64 out of range, which on amd64 yields math.MinInt64: a
// negative duration, fed straight into timers and billing.
func TestDrawNeverNegativeForLargeValues(t *testing.T) {
	for _, in := range []string{
		"2562047h47m16.854775807s",                               // max time.Duration, fixed
		"uniform:2562047h47m16.854775s:2562047h47m16.854775807s", // rounds to 2^63
		"normal:2000000h:2000000h",                               // half the draws overflow
		"lognormal:100ms:1e300",                                  // exp() overflows to +Inf
		"lognormal:1000000h:5",                                   // finite but above MaxInt64
		"lognormal:0s:1e300",                                     // 0 * Inf = NaN
	} {
		d, err := ParseDist(in)
		if err != nil {
			t.Fatalf("ParseDist(%q): %v", in, err)
		}
		r := newRand(13)
		for i := 0; i < 200; i++ {
			if v := d.Draw(r); v < 0 {
				t.Errorf("%s drew %v", in, v)
				break
			}
		}
		if m := d.Mean(); m < 0 {
			t.Errorf("%s: Mean = %v", in, m)
		}
	}
}

// ---------------------------------------------------------------------------
// Profiles

// medianInit is the median of runtime init + function init (the measured
// figure the profile is built from).
func medianInit(p Profile) time.Duration { return p.RuntimeInit.A + p.FunctionInit.A }

func meanCold(p Profile) time.Duration {
	return p.SandboxCreate.Mean() + p.RuntimeInit.Mean() + p.FunctionInit.Mean()
}

func TestDefaultProfileFamilies(t *testing.T) {
	tests := []struct {
		runtime string
		median  time.Duration // measured init median (lambda-perf)
		lo, hi  time.Duration // the seed's range, where it gives one
	}{
		{"python3.12", 80 * ms, 50 * ms, 150 * ms},
		{"python3.9", 80 * ms, 50 * ms, 150 * ms},
		{"nodejs20.x", 138 * ms, 50 * ms, 150 * ms},
		{"nodejs22.x", 138 * ms, 50 * ms, 150 * ms},
		{"go1.x", 50 * ms, 30 * ms, 80 * ms},
		{"provided.al2023", 50 * ms, 30 * ms, 80 * ms},
		{"provided.al2", 50 * ms, 30 * ms, 80 * ms},
		{"java21", 234 * ms, 200 * ms, 2000 * ms},
		{"java8.al2", 234 * ms, 200 * ms, 2000 * ms},
		{"dotnet8", 162 * ms, 0, 0},
		{"ruby3.3", 228 * ms, 0, 0},
		{"rust", 16 * ms, 0, 0},
		{"Java21", 234 * ms, 200 * ms, 2000 * ms}, // case-insensitive
		{"PYTHON3.12", 80 * ms, 50 * ms, 150 * ms},
		{"cobol", 80 * ms, 0, 0}, // unknown: python figures
		{"", 80 * ms, 0, 0},
	}
	for _, tc := range tests {
		p := DefaultProfile(tc.runtime)
		if got := medianInit(p); absDur(got-tc.median) > time.Microsecond {
			t.Errorf("%s: median init %v, want %v", tc.runtime, got, tc.median)
		}
		if tc.hi > 0 && (medianInit(p) < tc.lo || medianInit(p) > tc.hi) {
			t.Errorf("%s: median init %v outside the seed's %v-%v", tc.runtime, medianInit(p), tc.lo, tc.hi)
		}
		// Runtime init is two thirds, function init one third.
		if p.RuntimeInit.Kind != LogNormal || p.FunctionInit.Kind != LogNormal {
			t.Errorf("%s: init phases are %s/%s, want lognormal", tc.runtime, p.RuntimeInit.Kind, p.FunctionInit.Kind)
		}
		if absDur(p.RuntimeInit.A-2*p.FunctionInit.A) > 2 {
			t.Errorf("%s: runtime init %v is not twice function init %v", tc.runtime, p.RuntimeInit.A, p.FunctionInit.A)
		}
		if p.SandboxCreate != (Dist{Kind: Uniform, A: 10 * ms, B: 80 * ms}) {
			t.Errorf("%s: sandbox create %+v, want uniform 10-80ms (seed)", tc.runtime, p.SandboxCreate)
		}
		if p.Duration != FixedDist(80*ms) {
			t.Errorf("%s: duration %+v, want the seed's 80ms", tc.runtime, p.Duration)
		}
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestDefaultProfileOrdering(t *testing.T) {
	// Ordered fastest to slowest cold start, by the profile's mean and by a
	// sampled median of the drawn cold starts.
	order := []string{"rust", "go1.x", "python3.12", "nodejs20.x", "dotnet8", "ruby3.3", "java21"}
	var prevMean, prevMedian time.Duration
	for i, rt := range order {
		p := DefaultProfile(rt)
		r := newRand(uint64(20 + i))
		totals := make(sample, 20000)
		for j := range totals {
			ph := p.DrawCold(r)
			if ph.SandboxCreate < 10*ms || ph.SandboxCreate > 80*ms || ph.RuntimeInit <= 0 || ph.FunctionInit <= 0 {
				t.Fatalf("%s: implausible phases %+v", rt, ph)
			}
			totals[j] = ph.Total()
		}
		mean, median := meanCold(p), totals.quantile(0.5)
		if i > 0 && (mean <= prevMean || median <= prevMedian) {
			t.Errorf("%s (mean %v, median %v) not slower than %s (mean %v, median %v)",
				rt, mean, median, order[i-1], prevMean, prevMedian)
		}
		within(t, rt+" sampled mean", totals.mean(), float64(mean), 0.02*float64(mean))
		prevMean, prevMedian = mean, median
	}
	// Java's tail is much wider than Go's (seed: java 200-2000ms).
	java, golang := DefaultProfile("java21"), DefaultProfile("go1.x")
	if java.RuntimeInit.Sigma <= golang.RuntimeInit.Sigma {
		t.Errorf("java sigma %v not wider than go's %v", java.RuntimeInit.Sigma, golang.RuntimeInit.Sigma)
	}
}

func TestWithColdStart(t *testing.T) {
	base := DefaultProfile("java21")
	for _, total := range []time.Duration{0, 1, 2, 3, 5, 7, 99, 100 * ms, time.Second + 1, 999999999, 2 * time.Second, time.Hour + 3} {
		p := base.WithColdStart(total)
		for seed := uint64(0); seed < 5; seed++ {
			ph := p.DrawCold(newRand(seed))
			if ph.Total() != total {
				t.Fatalf("WithColdStart(%v): phases %+v sum to %v", total, ph, ph.Total())
			}
			if ph.SandboxCreate < 0 || ph.RuntimeInit < 0 || ph.FunctionInit < 0 {
				t.Fatalf("WithColdStart(%v): negative phase %+v", total, ph)
			}
		}
		if got := p.SandboxCreate.Mean() + p.RuntimeInit.Mean() + p.FunctionInit.Mean(); got != total {
			t.Fatalf("WithColdStart(%v): means sum to %v", total, got)
		}
		// Seed proportions: a quarter sandbox creation, half runtime init.
		if p.SandboxCreate != FixedDist(total/4) || p.RuntimeInit != FixedDist(total/2) {
			t.Errorf("WithColdStart(%v): split %v/%v/%v", total, p.SandboxCreate, p.RuntimeInit, p.FunctionInit)
		}
		if p.Duration != base.Duration {
			t.Errorf("WithColdStart changed the handler duration")
		}
	}
	if base.SandboxCreate.Kind != Uniform {
		t.Error("WithColdStart modified its receiver")
	}
}

// ---------------------------------------------------------------------------
// Fuzz: ParseDist never panics and returns a valid Dist or an ErrBadDist.

func FuzzParseDist(f *testing.F) {
	for _, s := range []string{
		"80ms", "fixed:80ms", "uniform:50ms:150ms", "normal:100ms:20ms", "lognormal:100ms:0.5",
		"", "fixed", "uniform:150ms:50ms", "lognormal:1s:NaN", "normal:-1ms:2ms", "::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDist(s)
		if err != nil {
			if !errors.Is(err, ErrBadDist) {
				t.Fatalf("ParseDist(%q) error %v does not wrap ErrBadDist", s, err)
			}
			return
		}
		if msg := validDist(d); msg != "" {
			t.Fatalf("ParseDist(%q) = %+v: %s", s, d, msg)
		}
		// What String prints, ParseDist reads back to the same Dist.
		back, err := ParseDist(d.String())
		if err != nil || back != d {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", s, d, d.String(), back, err)
		}
	})
}

// validDist describes why d is not a Dist ParseDist may return, or "".
func validDist(d Dist) string {
	switch {
	case d.A < 0 || d.B < 0:
		return "negative duration"
	case math.IsNaN(d.Sigma) || math.IsInf(d.Sigma, 0) || d.Sigma < 0:
		return "bad sigma"
	}
	switch d.Kind {
	case Fixed:
		if d.B != 0 || d.Sigma != 0 {
			return "fixed with B or Sigma"
		}
	case Uniform:
		if d.B < d.A || d.Sigma != 0 {
			return "uniform with B < A or Sigma"
		}
	case Normal:
		if d.Sigma != 0 {
			return "normal with Sigma"
		}
	case LogNormal:
		if d.B != 0 {
			return "lognormal with B"
		}
	default:
		return "unknown kind"
	}
	return ""
}
