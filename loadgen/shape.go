package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Shape kinds.
const (
	ShapeConstant = "constant" // Rate for the whole run, evenly spaced
	ShapePoisson  = "poisson"  // Rate for the whole run, exponential gaps
	ShapeStep     = "step"     // Rate, then a ramp to Rate*StepFactor
	ShapeSpike    = "spike"    // BaseRate with a burst to Rate
)

// Arrival processes: how arrivals are placed under the rate curve.
const (
	ArrivalsEven    = "even"    // the k-th arrival where the cumulative rate reaches k+0.5
	ArrivalsPoisson = "poisson" // an inhomogeneous Poisson process (gaps of Exp(1) in cumulative rate)
)

// Shape describes the offered rate over time, in requests per second.
type Shape struct {
	Kind string
	Rate float64 // constant/poisson: the rate; step: the starting rate; spike: the burst rate

	// step: at StepAt the rate climbs linearly to Rate*StepFactor over Ramp
	// (0 = an instant step), then holds.
	StepFactor float64
	StepAt     time.Duration
	Ramp       time.Duration

	// spike: BaseRate, except Rate during [SpikeAt, SpikeAt+SpikeFor).
	BaseRate float64
	SpikeAt  time.Duration
	SpikeFor time.Duration
}

// Defaults of the shape parameters.
const (
	DefaultStepFactor = 14               // the seed's 14x step...
	DefaultRamp       = 90 * time.Second // ...in 90 seconds
	DefaultSpikeBase  = 0.1              // spike base rate as a fraction of Rate
)

// WithDefaults fills unset shape parameters for a run of duration d:
// StepFactor 14, StepAt d/2, Ramp min(90 s, (d-StepAt)/2) so the peak holds
// for at least half of what is left, BaseRate Rate/10, SpikeAt d/3, SpikeFor
// d/3. Explicit values are kept. Ramp < 0 means "unset".
func (s Shape) WithDefaults(d time.Duration) Shape {
	switch s.Kind {
	case ShapeStep:
		if s.StepFactor == 0 {
			s.StepFactor = DefaultStepFactor
		}
		if s.StepAt == 0 {
			s.StepAt = d / 2
		}
		if s.Ramp < 0 {
			s.Ramp = min(DefaultRamp, (d-s.StepAt)/2)
			if s.Ramp < 0 {
				s.Ramp = 0
			}
		}
	case ShapeSpike:
		if s.BaseRate == 0 {
			s.BaseRate = s.Rate * DefaultSpikeBase
		}
		if s.SpikeAt == 0 {
			s.SpikeAt = d / 3
		}
		if s.SpikeFor == 0 {
			s.SpikeFor = d / 3
		}
	}
	return s
}

// Validate reports parameters that cannot describe a rate curve.
func (s Shape) Validate() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	switch s.Kind {
	case ShapeConstant, ShapePoisson, ShapeStep, ShapeSpike:
	default:
		return fmt.Errorf("unknown shape %q (want constant, poisson, step or spike)", s.Kind)
	}
	if bad(s.Rate) || s.Rate == 0 {
		return fmt.Errorf("rate must be > 0, got %v", s.Rate)
	}
	if s.Kind == ShapeStep && (bad(s.StepFactor) || s.StepAt < 0 || s.Ramp < 0) {
		return fmt.Errorf("step: need step factor >= 0, step-at >= 0, ramp >= 0")
	}
	if s.Kind == ShapeSpike && (bad(s.BaseRate) || s.SpikeAt < 0 || s.SpikeFor < 0) {
		return fmt.Errorf("spike: need base rate >= 0, spike-at >= 0, spike-for >= 0")
	}
	return nil
}

// String describes the rate curve, e.g. "step 10/s -> 140/s (x14) at 15s over 7.5s".
func (s Shape) String() string {
	switch s.Kind {
	case ShapeStep:
		return fmt.Sprintf("step %s/s -> %s/s (x%s) at %v over %v", fnum(s.Rate), fnum(s.Rate*s.StepFactor), fnum(s.StepFactor), s.StepAt, s.Ramp)
	case ShapeSpike:
		return fmt.Sprintf("spike %s/s with a burst to %s/s at %v for %v", fnum(s.BaseRate), fnum(s.Rate), s.SpikeAt, s.SpikeFor)
	}
	return fmt.Sprintf("%s %s/s", s.Kind, fnum(s.Rate))
}

func fnum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// DefaultArrivals is the arrival process a shape uses unless told otherwise:
// Poisson for "poisson", even spacing for the others.
func (s Shape) DefaultArrivals() string {
	if s.Kind == ShapePoisson {
		return ArrivalsPoisson
	}
	return ArrivalsEven
}

// RateAt returns the offered rate at offset t (requests/s).
func (s Shape) RateAt(t time.Duration) float64 {
	switch s.Kind {
	case ShapeStep:
		if t < s.StepAt {
			return s.Rate
		}
		peak := s.Rate * s.StepFactor
		if s.Ramp <= 0 || t >= s.StepAt+s.Ramp {
			return peak
		}
		f := float64(t-s.StepAt) / float64(s.Ramp)
		return s.Rate + (peak-s.Rate)*f
	case ShapeSpike:
		if t >= s.SpikeAt && t < s.SpikeAt+s.SpikeFor {
			return s.Rate
		}
		return s.BaseRate
	}
	return s.Rate
}

// segment is a piece of the rate curve where the rate is linear in time:
// from r0 at t0 to r1 at t1 (seconds).
type segment struct{ t0, t1, r0, r1 float64 }

func (g segment) area() float64 { return (g.r0 + g.r1) / 2 * (g.t1 - g.t0) }

// segments cuts the rate curve over [0, d) into linear pieces.
func (s Shape) segments(d time.Duration) []segment {
	end := d.Seconds()
	// Breakpoints of the curve, clipped to the run.
	var cuts []float64
	switch s.Kind {
	case ShapeStep:
		cuts = []float64{s.StepAt.Seconds(), (s.StepAt + s.Ramp).Seconds()}
	case ShapeSpike:
		cuts = []float64{s.SpikeAt.Seconds(), (s.SpikeAt + s.SpikeFor).Seconds()}
	}
	points := []float64{0}
	for _, c := range cuts {
		if c > points[len(points)-1] && c < end {
			points = append(points, c)
		}
	}
	points = append(points, end)
	segs := make([]segment, 0, len(points)-1)
	for i := 0; i+1 < len(points); i++ {
		t0, t1 := points[i], points[i+1]
		if t1 <= t0 {
			continue
		}
		// Rates at the ends of a piece: the value just inside it (the curve
		// jumps at spike edges and at an instant step).
		r0 := s.RateAt(time.Duration(t0 * float64(time.Second)))
		r1 := s.RateAt(time.Duration(t1*float64(time.Second)) - 1)
		if s.Kind == ShapeStep && s.Ramp > 0 {
			// The curve is continuous: take exact values at the ends.
			r0, r1 = s.rateAtSeconds(t0), s.rateAtSeconds(t1)
		}
		segs = append(segs, segment{t0, t1, r0, r1})
	}
	return segs
}

// rateAtSeconds is RateAt for the step's linear ramp without rounding t to
// nanoseconds, so the segments' areas are exact.
func (s Shape) rateAtSeconds(t float64) float64 {
	at, ramp := s.StepAt.Seconds(), s.Ramp.Seconds()
	switch {
	case t <= at:
		return s.Rate
	case t >= at+ramp:
		return s.Rate * s.StepFactor
	}
	return s.Rate + (s.Rate*s.StepFactor-s.Rate)*(t-at)/ramp
}

// Expected returns the expected number of arrivals in a run of duration d
// (the area under the rate curve).
func (s Shape) Expected(d time.Duration) float64 {
	var a float64
	for _, g := range s.segments(d) {
		a += g.area()
	}
	return a
}

// Schedule yields the send offsets of a run, in order. Arrivals are placed by
// time rescaling: the k-th arrival is where the cumulative rate Λ(t) reaches
// a target (k+0.5 for even arrivals; a sum of Exp(1) gaps for Poisson), so
// one code path serves every shape. Deterministic for a given seed.
type Schedule struct {
	segs    []segment
	i       int     // current segment
	base    float64 // Λ at the start of segs[i]
	k       int64   // arrivals produced
	target  float64 // Λ of the last Poisson arrival
	poisson bool
	rng     *rand.Rand
}

// NewSchedule returns the arrival schedule of shape over [0, d).
func NewSchedule(shape Shape, d time.Duration, arrivals string, seed int64) (*Schedule, error) {
	if err := shape.Validate(); err != nil {
		return nil, err
	}
	if d <= 0 {
		return nil, fmt.Errorf("duration must be > 0, got %v", d)
	}
	s := &Schedule{segs: shape.segments(d)}
	switch arrivals {
	case "", ArrivalsEven:
		if arrivals == "" && shape.Kind == ShapePoisson {
			s.poisson = true
		}
	case ArrivalsPoisson:
		s.poisson = true
	default:
		return nil, fmt.Errorf("unknown arrival process %q (want even or poisson)", arrivals)
	}
	if s.poisson {
		s.rng = rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	}
	return s, nil
}

// Next returns the next send offset, or false when the run is over.
func (s *Schedule) Next() (time.Duration, bool) {
	var target float64
	if s.poisson {
		s.target += s.rng.ExpFloat64()
		target = s.target
	} else {
		target = float64(s.k) + 0.5
	}
	for s.i < len(s.segs) {
		g := s.segs[s.i]
		a := g.area()
		if target < s.base+a {
			t := g.t0 + invertLinear(g, target-s.base)
			if t >= g.t1 { // rounding at the segment's end
				t = math.Nextafter(g.t1, g.t0)
			}
			s.k++
			return time.Duration(t * float64(time.Second)), true
		}
		s.base += a
		s.i++
	}
	return 0, false
}

// invertLinear returns τ with ∫_0^τ (r0 + b u) du = want, where b is the
// segment's slope: τ = 2·want / (r0 + sqrt(r0² + 2·b·want)), the form that
// stays exact when b is 0 or tiny.
func invertLinear(g segment, want float64) float64 {
	if want <= 0 {
		return 0
	}
	b := (g.r1 - g.r0) / (g.t1 - g.t0)
	disc := g.r0*g.r0 + 2*b*want
	if disc < 0 {
		disc = 0
	}
	den := g.r0 + math.Sqrt(disc)
	if den <= 0 {
		return g.t1 - g.t0
	}
	return 2 * want / den
}

// Offsets returns every send offset of a run (for tests and dry runs).
func Offsets(shape Shape, d time.Duration, arrivals string, seed int64) ([]time.Duration, error) {
	s, err := NewSchedule(shape, d, arrivals, seed)
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, 0, int(shape.Expected(d)*1.1)+16)
	for {
		t, ok := s.Next()
		if !ok {
			return out, nil
		}
		out = append(out, t)
	}
}
