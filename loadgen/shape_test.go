package loadgen

import (
	"math"
	"slices"
	"testing"
	"time"
)

const sec = time.Second

func countIn(offs []time.Duration, from, to time.Duration) int {
	n := 0
	for _, o := range offs {
		if o >= from && o < to {
			n++
		}
	}
	return n
}

func TestShapesArrivalCounts(t *testing.T) {
	cases := []struct {
		name     string
		shape    Shape
		d        time.Duration
		expected float64 // area under the rate curve
		windows  []struct {
			from, to time.Duration
			want     int
		}
	}{
		{
			name: "constant", shape: Shape{Kind: ShapeConstant, Rate: 100}, d: 10 * sec, expected: 1000,
			windows: []struct {
				from, to time.Duration
				want     int
			}{{0, sec, 100}, {9 * sec, 10 * sec, 100}},
		},
		{
			name: "constant fractional rate", shape: Shape{Kind: ShapeConstant, Rate: 2.5}, d: 4 * sec, expected: 10,
		},
		{
			name: "step with ramp", shape: Shape{Kind: ShapeStep, Rate: 10, StepFactor: 14, StepAt: 30 * sec, Ramp: 20 * sec}, d: 60 * sec,
			expected: 10*30 + (10+140)/2.0*20 + 140*10,
			windows: []struct {
				from, to time.Duration
				want     int
			}{{0, 30 * sec, 300}, {30 * sec, 50 * sec, 1500}, {50 * sec, 60 * sec, 1400}},
		},
		{
			name: "instant step", shape: Shape{Kind: ShapeStep, Rate: 10, StepFactor: 2, StepAt: 5 * sec}, d: 10 * sec,
			expected: 50 + 100,
			windows: []struct {
				from, to time.Duration
				want     int
			}{{0, 5 * sec, 50}, {5 * sec, 10 * sec, 100}},
		},
		{
			name: "step whose ramp outlasts the run", shape: Shape{Kind: ShapeStep, Rate: 10, StepFactor: 14, StepAt: 10 * sec, Ramp: 90 * sec}, d: 20 * sec,
			// the ramp reaches 10 + 130*10/90 at the end of the run
			expected: 100 + (10+(10+130.0*10/90))/2*10,
		},
		{
			name: "spike", shape: Shape{Kind: ShapeSpike, Rate: 100, BaseRate: 10, SpikeAt: 10 * sec, SpikeFor: 5 * sec}, d: 30 * sec,
			expected: 10*25 + 100*5,
			windows: []struct {
				from, to time.Duration
				want     int
			}{{0, 10 * sec, 100}, {10 * sec, 15 * sec, 500}, {15 * sec, 30 * sec, 150}},
		},
		{
			name: "spike past the end is clipped", shape: Shape{Kind: ShapeSpike, Rate: 100, BaseRate: 0, SpikeAt: 8 * sec, SpikeFor: 10 * sec}, d: 10 * sec,
			expected: 200,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.shape.Expected(tc.d); math.Abs(got-tc.expected) > 1e-6 {
				t.Fatalf("Expected() = %v, want %v", got, tc.expected)
			}
			offs, err := Offsets(tc.shape, tc.d, ArrivalsEven, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Even arrivals: the k-th where the cumulative rate reaches k+0.5,
			// so the count is the area rounded to nearest.
			if want := int(math.Floor(tc.expected + 0.5)); len(offs) != want {
				t.Fatalf("even arrivals: %d, want %d", len(offs), want)
			}
			if !slices.IsSorted(offs) || offs[0] < 0 || offs[len(offs)-1] >= tc.d {
				t.Fatalf("offsets not sorted within [0, %v): first %v last %v", tc.d, offs[0], offs[len(offs)-1])
			}
			for _, w := range tc.windows {
				if got := countIn(offs, w.from, w.to); abs(got-w.want) > 1 {
					t.Errorf("[%v, %v): %d arrivals, want %d±1", w.from, w.to, got, w.want)
				}
			}

			// Poisson arrivals over the same curve: within 4 sigma of the area.
			p1, _ := Offsets(tc.shape, tc.d, ArrivalsPoisson, 7)
			p2, _ := Offsets(tc.shape, tc.d, ArrivalsPoisson, 7)
			if !slices.Equal(p1, p2) {
				t.Fatal("Poisson arrivals differ for the same seed")
			}
			if tol := 4*math.Sqrt(tc.expected) + 1; math.Abs(float64(len(p1))-tc.expected) > tol {
				t.Fatalf("poisson arrivals: %d, want %v ± %.0f", len(p1), tc.expected, tol)
			}
			if !slices.IsSorted(p1) || (len(p1) > 0 && p1[len(p1)-1] >= tc.d) {
				t.Fatal("Poisson offsets not sorted within the run")
			}
		})
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestConstantSpacing(t *testing.T) {
	offs, _ := Offsets(Shape{Kind: ShapeConstant, Rate: 100}, sec, ArrivalsEven, 0)
	if offs[0] != 5*time.Millisecond {
		t.Fatalf("first arrival at %v, want 5ms (half a gap)", offs[0])
	}
	for i := 1; i < len(offs); i++ {
		if gap := offs[i] - offs[i-1]; gap < 10*time.Millisecond-time.Microsecond || gap > 10*time.Millisecond+time.Microsecond {
			t.Fatalf("gap %d = %v, want 10ms", i, gap)
		}
	}
}

// TestPoissonSeed: the seed's spike (500 rps for 30 s) gives the same
// arrivals for the same seed and different ones for another; gaps look
// exponential (mean 2 ms, coefficient of variation ~1).
func TestPoissonSeed(t *testing.T) {
	shape := Shape{Kind: ShapePoisson, Rate: 500}
	a, _ := Offsets(shape, 30*sec, "", 7)
	b, _ := Offsets(shape, 30*sec, "", 7)
	c, _ := Offsets(shape, 30*sec, "", 8)
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatal("seed does not determine the arrivals")
	}
	if math.Abs(float64(len(a))-15000) > 4*math.Sqrt(15000) {
		t.Fatalf("%d arrivals, want about 15000", len(a))
	}
	var sum, sumsq float64
	for i := 1; i < len(a); i++ {
		g := (a[i] - a[i-1]).Seconds()
		sum += g
		sumsq += g * g
	}
	n := float64(len(a) - 1)
	mean := sum / n
	cv := math.Sqrt(sumsq/n-mean*mean) / mean
	if math.Abs(mean-0.002) > 0.0002 || math.Abs(cv-1) > 0.05 {
		t.Fatalf("gaps: mean %v cv %v, want 2ms and ~1", mean, cv)
	}
}

func TestShapeDefaults(t *testing.T) {
	d := 30 * sec
	st := Shape{Kind: ShapeStep, Rate: 10, Ramp: -1}.WithDefaults(d)
	if st.StepFactor != 14 || st.StepAt != 15*sec || st.Ramp != 7500*time.Millisecond {
		t.Fatalf("step defaults: %+v", st)
	}
	long := Shape{Kind: ShapeStep, Rate: 10, Ramp: -1}.WithDefaults(10 * time.Minute)
	if long.Ramp != 90*sec {
		t.Fatalf("step ramp on a long run: %v, want 90s", long.Ramp)
	}
	if got := long.RateAt(10 * time.Minute); got != 140 {
		t.Fatalf("step peak %v, want 140", got)
	}
	sp := Shape{Kind: ShapeSpike, Rate: 500}.WithDefaults(d)
	if sp.BaseRate != 50 || sp.SpikeAt != 10*sec || sp.SpikeFor != 10*sec {
		t.Fatalf("spike defaults: %+v", sp)
	}
	if (Shape{Kind: ShapePoisson}).DefaultArrivals() != ArrivalsPoisson || (Shape{Kind: ShapeSpike}).DefaultArrivals() != ArrivalsEven {
		t.Fatal("default arrivals")
	}
}

func TestShapeValidate(t *testing.T) {
	for _, s := range []Shape{
		{Kind: "sawtooth", Rate: 1},
		{Kind: ShapeConstant, Rate: 0},
		{Kind: ShapeConstant, Rate: math.NaN()},
		{Kind: ShapeStep, Rate: 1, StepFactor: -1},
		{Kind: ShapeSpike, Rate: 1, BaseRate: -1},
	} {
		if s.Validate() == nil {
			t.Errorf("%+v: want an error", s)
		}
	}
	if _, err := NewSchedule(Shape{Kind: ShapeConstant, Rate: 1}, 0, "", 0); err == nil {
		t.Error("zero duration: want an error")
	}
	if _, err := NewSchedule(Shape{Kind: ShapeConstant, Rate: 1}, sec, "bursty", 0); err == nil {
		t.Error("unknown arrivals: want an error")
	}
}
