// Package synthetic models a function without a process: the cold-start
// phases (sandbox creation, runtime init, function init) and the handler
// duration are drawn from configurable distributions. Workers and the
// simulator draw from the same Profile.
package synthetic

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Kind is a distribution family.
type Kind string

const (
	Fixed     Kind = "fixed"
	Uniform   Kind = "uniform"
	Normal    Kind = "normal"
	LogNormal Kind = "lognormal"
)

// Dist is a distribution of durations. Fixed uses A; Uniform draws from
// [A, B]; Normal has mean A and standard deviation B; LogNormal has median A
// and the standard deviation B of the underlying normal (sigma, unitless).
// Draws are clamped at zero.
type Dist struct {
	Kind  Kind          `json:"kind"`
	A     time.Duration `json:"a"`
	B     time.Duration `json:"b,omitempty"`
	Sigma float64       `json:"sigma,omitempty"`
}

// FixedDist is a constant duration.
func FixedDist(d time.Duration) Dist { return Dist{Kind: Fixed, A: d} }

// Draw returns one sample, clamped to [0, MaxInt64].
func (d Dist) Draw(r *rand.Rand) time.Duration {
	var v float64
	switch d.Kind {
	case Uniform:
		lo, hi := float64(d.A), float64(d.B)
		v = lo + r.Float64()*(hi-lo)
	case Normal:
		v = float64(d.A) + r.NormFloat64()*float64(d.B)
	case LogNormal:
		v = float64(d.A) * math.Exp(r.NormFloat64()*d.Sigma)
	default:
		return max(d.A, 0)
	}
	return clamp(v)
}

// clamp converts a float to a Duration without the overflow to MinInt64
// that a plain conversion gives above MaxInt64 or for NaN.
func clamp(v float64) time.Duration {
	switch {
	case math.IsNaN(v) || v <= 0:
		return 0
	case v >= math.MaxInt64:
		return math.MaxInt64
	}
	return time.Duration(v)
}

// Mean returns the distribution's mean.
func (d Dist) Mean() time.Duration {
	switch d.Kind {
	case Uniform:
		return d.A + (d.B-d.A)/2
	case LogNormal:
		return clamp(float64(d.A) * math.Exp(d.Sigma*d.Sigma/2))
	}
	return d.A
}

func (d Dist) String() string {
	switch d.Kind {
	case Uniform:
		return fmt.Sprintf("uniform:%s:%s", d.A, d.B)
	case Normal:
		return fmt.Sprintf("normal:%s:%s", d.A, d.B)
	case LogNormal:
		return fmt.Sprintf("lognormal:%s:%g", d.A, d.Sigma)
	}
	return d.A.String()
}

// ErrBadDist is wrapped by every ParseDist error.
var ErrBadDist = errors.New("invalid distribution")

// ParseDist reads "80ms", "fixed:80ms", "uniform:50ms:150ms",
// "normal:100ms:20ms" or "lognormal:100ms:0.5".
func ParseDist(s string) (Dist, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	dur := func(p string) (time.Duration, error) {
		d, err := time.ParseDuration(p)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%w %q: %q is not a non-negative duration such as 80ms", ErrBadDist, s, p)
		}
		return d, nil
	}
	bad := func(msg string) (Dist, error) { return Dist{}, fmt.Errorf("%w %q: %s", ErrBadDist, s, msg) }
	switch {
	case len(parts) == 1:
		d, err := dur(parts[0])
		return Dist{Kind: Fixed, A: d}, err
	case Kind(parts[0]) == Fixed && len(parts) == 2:
		d, err := dur(parts[1])
		return Dist{Kind: Fixed, A: d}, err
	case (Kind(parts[0]) == Uniform || Kind(parts[0]) == Normal) && len(parts) == 3:
		a, err := dur(parts[1])
		if err != nil {
			return Dist{}, err
		}
		b, err := dur(parts[2])
		if err != nil {
			return Dist{}, err
		}
		if Kind(parts[0]) == Uniform && b < a {
			return bad("uniform upper bound below lower bound")
		}
		return Dist{Kind: Kind(parts[0]), A: a, B: b}, nil
	case Kind(parts[0]) == LogNormal && len(parts) == 3:
		a, err := dur(parts[1])
		if err != nil {
			return Dist{}, err
		}
		sig, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || sig < 0 || math.IsNaN(sig) || math.IsInf(sig, 0) {
			return bad("sigma must be a non-negative number")
		}
		return Dist{Kind: LogNormal, A: a, Sigma: sig}, nil
	}
	return bad("want DURATION, fixed:D, uniform:LO:HI, normal:MEAN:SD or lognormal:MEDIAN:SIGMA")
}

// Profile is the timing model of a synthetic function.
type Profile struct {
	SandboxCreate Dist `json:"sandbox_create"`
	RuntimeInit   Dist `json:"runtime_init"`
	FunctionInit  Dist `json:"function_init"`
	Duration      Dist `json:"duration"`
}

// Phases is one cold start's drawn phase durations.
type Phases struct {
	SandboxCreate, RuntimeInit, FunctionInit time.Duration
}

// Total is the whole cold start (phases 1-3).
func (p Phases) Total() time.Duration { return p.SandboxCreate + p.RuntimeInit + p.FunctionInit }

// DrawCold draws the three cold-start phases.
func (p Profile) DrawCold(r *rand.Rand) Phases {
	return Phases{p.SandboxCreate.Draw(r), p.RuntimeInit.Draw(r), p.FunctionInit.Draw(r)}
}

// WithColdStart returns p with its cold start set to total, split over the
// phases in the seed's proportions (sandbox creation is a fixed share; the
// rest is runtime and function init).
func (p Profile) WithColdStart(total time.Duration) Profile {
	create := total / 4
	rt := total / 2
	p.SandboxCreate = FixedDist(create)
	p.RuntimeInit = FixedDist(rt)
	p.FunctionInit = FixedDist(total - create - rt)
	return p
}
