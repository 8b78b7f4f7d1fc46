package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/coldstart-dev/coldstart/worker/synthetic"
)

// Handler draws handler durations in milliseconds.
type Handler interface {
	DrawMs(r *rand.Rand) float64
}

// distHandler draws from a synthetic distribution (the worker's own type).
type distHandler struct{ d synthetic.Dist }

func (h distHandler) DrawMs(r *rand.Rand) float64 {
	return float64(h.d.Draw(r)) / float64(time.Millisecond)
}

// choiceHandler picks uniformly from a list, like the seed's
// random.choice(handler_ms_dist).
type choiceHandler []float64

func (h choiceHandler) DrawMs(r *rand.Rand) float64 { return h[r.IntN(len(h))] }

// ErrBadSpec is wrapped by errors in shape and handler specifications.
var ErrBadSpec = errors.New("bad specification")

// ParseHandler reads a handler duration: anything synthetic.ParseDist takes
// ("80ms", "uniform:50ms:150ms", "lognormal:100ms:0.5"), or
// "choice:80ms|80ms|200ms" for the seed's list of equally likely durations.
func ParseHandler(s string) (Handler, error) {
	if rest, ok := strings.CutPrefix(s, "choice:"); ok {
		var c choiceHandler
		for _, p := range strings.Split(rest, "|") {
			d, err := time.ParseDuration(strings.TrimSpace(p))
			if err != nil || d < 0 {
				return nil, fmt.Errorf("%w: handler %q: %q is not a duration such as 80ms", ErrBadSpec, s, p)
			}
			c = append(c, float64(d)/float64(time.Millisecond))
		}
		return c, nil
	}
	d, err := synthetic.ParseDist(s)
	if err != nil {
		return nil, fmt.Errorf("handler: %w", err)
	}
	return distHandler{d}, nil
}

// Shape names.
const (
	ShapeSteady  = "steady"  // evenly spaced arrivals at Rate
	ShapePoisson = "poisson" // exponential gaps at Rate (the seed's arrivals)
	ShapeSpike   = "spike"   // Poisson at Rate, Peak during [At, At+For)
	ShapeStep    = "step"    // Rate, then a ramp over Ramp to Rate*Factor at At (the seed's 14x in 90 s)
	ShapeDiurnal = "diurnal" // Rate*(1 + Amplitude*sin) over Period, mean Rate
)

// Shapes lists the generated arrival processes.
var Shapes = []string{ShapeSteady, ShapePoisson, ShapeSpike, ShapeStep, ShapeDiurnal}

// ShapeSpec describes one generated function.
type ShapeSpec struct {
	Name      string
	Shape     string
	Rate      float64 // requests per second (mean or base)
	Duration  time.Duration
	Seed      uint64
	Handler   Handler
	MemoryMB  int
	Peak      float64       // spike: rate during the spike (default 10*Rate)
	At        time.Duration // spike/step start (default Duration/3)
	For       time.Duration // spike length (default 30s)
	Factor    float64       // step: final rate / Rate (default 14)
	Ramp      time.Duration // step: ramp length (default 90s)
	Period    time.Duration // diurnal period (default 24h)
	Amplitude float64       // diurnal relative amplitude, 0..1 (default 0.8)
}

func (s *ShapeSpec) defaults() {
	if s.Peak == 0 {
		s.Peak = 10 * s.Rate
	}
	if s.At == 0 {
		s.At = s.Duration / 3
	}
	if s.For == 0 {
		s.For = 30 * time.Second
	}
	if s.Factor == 0 {
		s.Factor = 14
	}
	if s.Ramp == 0 {
		s.Ramp = 90 * time.Second
	}
	if s.Period == 0 {
		s.Period = 24 * time.Hour
	}
	if s.Amplitude == 0 {
		s.Amplitude = 0.8
	}
}

func (s *ShapeSpec) validate() error {
	bad := func(msg string, a ...any) error {
		return fmt.Errorf("%w: function %q: %s", ErrBadSpec, s.Name, fmt.Sprintf(msg, a...))
	}
	switch {
	case indexOf(Shapes, s.Shape) < 0:
		return bad("shape %q is not one of %s", s.Shape, strings.Join(Shapes, "|"))
	case !(s.Rate > 0) || math.IsInf(s.Rate, 0):
		return bad("rate must be above 0 requests/s")
	case s.Duration <= 0:
		return bad("duration must be above 0")
	case s.Rate*s.Duration.Seconds() > 2e8:
		return bad("rate x duration is over 200 million requests")
	case s.Peak < 0 || s.Factor < 0 || s.Amplitude < 0 || s.Amplitude > 1:
		return bad("peak and factor must be >= 0 and amplitude within 0..1")
	case s.Handler == nil:
		return bad("no handler duration")
	}
	return checkName(s.Name)
}

// rateAt is the shape's request rate at t seconds and an upper bound of it.
func (s *ShapeSpec) rateAt(t float64) float64 {
	at, ramp := s.At.Seconds(), s.Ramp.Seconds()
	switch s.Shape {
	case ShapeSpike:
		if t >= at && t < at+s.For.Seconds() {
			return s.Peak
		}
	case ShapeStep:
		switch {
		case t < at:
		case t >= at+ramp:
			return s.Rate * s.Factor
		default:
			return s.Rate + (s.Rate*s.Factor-s.Rate)*(t-at)/ramp
		}
	case ShapeDiurnal:
		return s.Rate * (1 + s.Amplitude*math.Sin(2*math.Pi*t/s.Period.Seconds()-math.Pi/2))
	}
	return s.Rate
}

func (s *ShapeSpec) maxRate() float64 {
	switch s.Shape {
	case ShapeSpike:
		return math.Max(s.Rate, s.Peak)
	case ShapeStep:
		return math.Max(s.Rate, s.Rate*s.Factor)
	case ShapeDiurnal:
		return s.Rate * (1 + s.Amplitude)
	}
	return s.Rate
}

// arrivals returns the shape's arrival times in seconds.
func (s *ShapeSpec) arrivals(r *rand.Rand) []float64 {
	end := s.Duration.Seconds()
	var ts []float64
	if s.Shape == ShapeSteady {
		for k := 1; ; k++ {
			t := float64(k) / s.Rate
			if t > end {
				return ts
			}
			ts = append(ts, t)
		}
	}
	// Non-homogeneous Poisson by thinning (Lewis and Shedler): candidates at
	// the maximum rate, each kept with probability rate(t)/max.
	lmax := s.maxRate()
	t := 0.0
	for {
		t += r.ExpFloat64() / lmax
		if t > end {
			return ts
		}
		if s.Shape == ShapePoisson || r.Float64()*lmax < s.rateAt(t) {
			ts = append(ts, t)
		}
	}
}

// Generate builds a trace from shape specifications, one function each.
// Each function has its own random stream (seeded by Seed and its position),
// so adding a function does not change the arrivals of the others.
func Generate(specs []ShapeSpec) (*Trace, error) {
	tr := &Trace{}
	seen := map[string]bool{}
	for i := range specs {
		s := specs[i]
		s.defaults()
		if err := s.validate(); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%w: function %q given twice", ErrBadSpec, s.Name)
		}
		seen[s.Name] = true
		tr.Functions = append(tr.Functions, Function{Name: s.Name, App: s.Name, Account: DefaultAccount, MemoryMB: s.MemoryMB})
		r := rand.New(rand.NewPCG(s.Seed, uint64(i)))
		for _, t := range s.arrivals(r) {
			tr.Events = append(tr.Events, Event{T: t, DurMs: s.Handler.DrawMs(r), Fn: int32(i)})
		}
	}
	sortEvents(tr.Events)
	return tr, nil
}

// ParseGen reads a --gen specification,
// "name=api,shape=spike,rate=5,peak=500,at=60s,for=30s,handler=80ms,memory=1024",
// on top of base (the single-function flags).
func ParseGen(spec string, base ShapeSpec) (ShapeSpec, error) {
	s := base
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return s, fmt.Errorf("%w: --gen %q: %q is not key=value", ErrBadSpec, spec, kv)
		}
		if err := s.set(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
			return s, fmt.Errorf("--gen %q: %w", spec, err)
		}
	}
	return s, nil
}

func (s *ShapeSpec) set(k, v string) error {
	var err error
	num := func(p *float64) { *p, err = strconv.ParseFloat(v, 64) }
	dur := func(p *time.Duration) { *p, err = time.ParseDuration(v) }
	switch k {
	case "name":
		s.Name = v
	case "shape":
		s.Shape = v
	case "rate":
		num(&s.Rate)
	case "peak":
		num(&s.Peak)
	case "factor":
		num(&s.Factor)
	case "amplitude":
		num(&s.Amplitude)
	case "duration":
		dur(&s.Duration)
	case "at":
		dur(&s.At)
	case "for":
		dur(&s.For)
	case "ramp":
		dur(&s.Ramp)
	case "period":
		dur(&s.Period)
	case "seed":
		s.Seed, err = strconv.ParseUint(v, 10, 64)
	case "memory":
		s.MemoryMB, err = strconv.Atoi(v)
		if err == nil && (s.MemoryMB < MinMemoryMB || s.MemoryMB > MaxMemoryMB) {
			err = fmt.Errorf("memory must be %d to %d MB", MinMemoryMB, MaxMemoryMB)
		}
	case "handler":
		s.Handler, err = ParseHandler(v)
	default:
		return fmt.Errorf("%w: unknown key %q", ErrBadSpec, k)
	}
	if err != nil {
		return fmt.Errorf("%w: %s=%s: %v", ErrBadSpec, k, v, err)
	}
	return nil
}
