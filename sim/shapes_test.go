package sim

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestShapes(t *testing.T) {
	h, _ := ParseHandler("80ms")
	base := ShapeSpec{Name: "f", Rate: 20, Duration: 600 * time.Second, Seed: 1, Handler: h}
	count := func(tr *Trace, from, to float64) int {
		n := 0
		for _, e := range tr.Events {
			if e.T >= from && e.T < to {
				n++
			}
		}
		return n
	}
	gen := func(shape string, mod func(*ShapeSpec)) *Trace {
		s := base
		s.Shape = shape
		if mod != nil {
			mod(&s)
		}
		tr, err := Generate([]ShapeSpec{s})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	near := func(name string, got int, want float64) {
		if math.Abs(float64(got)-want) > 5*math.Sqrt(want)+1 {
			t.Fatalf("%s: %d arrivals, want about %.0f", name, got, want)
		}
	}
	if tr := gen(ShapeSteady, nil); len(tr.Events) != 12000 || tr.Events[0].T != 0.05 {
		t.Fatalf("steady: %d arrivals starting at %v, want 12000 from 0.05 s", len(tr.Events), tr.Events[0].T)
	}
	near("poisson", len(gen(ShapePoisson, nil).Events), 12000)
	sp := gen(ShapeSpike, func(s *ShapeSpec) { s.Peak, s.At, s.For = 500, 100*time.Second, 30*time.Second })
	near("spike window", count(sp, 100, 130), 500*30)
	near("spike before", count(sp, 0, 100), 20*100)
	st := gen(ShapeStep, func(s *ShapeSpec) { s.At, s.Ramp, s.Factor = 100*time.Second, 90*time.Second, 14 })
	near("step before", count(st, 0, 100), 20*100)
	near("step ramp", count(st, 100, 190), 90*(20+280)/2)
	near("step after", count(st, 190, 600), 280*410)
	di := gen(ShapeDiurnal, func(s *ShapeSpec) { s.Period, s.Amplitude = 600*time.Second, 0.8 })
	near("diurnal trough", count(di, 0, 60), 60*20*(1-0.8*0.904)) // mean rate over the first tenth
	near("diurnal peak", count(di, 270, 330), 60*20*(1+0.8*0.984))
	a, b := gen(ShapePoisson, nil), gen(ShapePoisson, nil)
	if len(a.Events) != len(b.Events) || a.Events[100] != b.Events[100] {
		t.Fatal("the same seed generated different traces")
	}
}

func TestGenerateSeveralFunctions(t *testing.T) {
	h, _ := ParseHandler("choice:80ms|200ms")
	one, _ := Generate([]ShapeSpec{{Name: "a", Shape: ShapePoisson, Rate: 5, Duration: time.Minute, Seed: 3, Handler: h}})
	two, err := Generate([]ShapeSpec{{Name: "a", Shape: ShapePoisson, Rate: 5, Duration: time.Minute, Seed: 3, Handler: h},
		{Name: "b", Shape: ShapeSteady, Rate: 1, Duration: time.Minute, Seed: 3, Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	var onlyA []Event
	for _, e := range two.Events {
		if e.Fn == 0 {
			onlyA = append(onlyA, e)
		}
	}
	if len(onlyA) != len(one.Events) || onlyA[3] != one.Events[3] || len(two.Events)-len(onlyA) != 60 {
		t.Fatal("adding a function changed another function's arrivals")
	}
	if _, err := Generate([]ShapeSpec{{Name: "a", Shape: "burst", Rate: 1, Duration: time.Second, Handler: h}}); !errors.Is(err, ErrBadSpec) {
		t.Fatalf("unknown shape: %v", err)
	}
	if _, err := Generate([]ShapeSpec{{Name: "a", Shape: ShapePoisson, Rate: 0, Duration: time.Second, Handler: h}}); !errors.Is(err, ErrBadSpec) {
		t.Fatalf("zero rate: %v", err)
	}
}

func TestParseGenAndHandler(t *testing.T) {
	h, _ := ParseHandler("80ms")
	base := ShapeSpec{Name: "fn1", Shape: ShapePoisson, Rate: 1, Duration: time.Minute, Handler: h}
	s, err := ParseGen("name=api,shape=spike,rate=5,peak=500,at=60s,for=30s,handler=choice:80ms|200ms,memory=1024", base)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "api" || s.Shape != ShapeSpike || s.Rate != 5 || s.Peak != 500 || s.At != time.Minute || s.For != 30*time.Second || s.MemoryMB != 1024 {
		t.Fatalf("parsed %+v", s)
	}
	if c, ok := s.Handler.(choiceHandler); !ok || len(c) != 2 || c[1] != 200 {
		t.Fatalf("handler %#v", s.Handler)
	}
	for _, bad := range []string{"rate", "speed=3", "rate=x", "memory=64", "handler=80", "at=soon"} {
		if _, err := ParseGen(bad, base); !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParseGen(%q) = %v, want ErrBadSpec", bad, err)
		}
	}
	for _, good := range []string{"80ms", "uniform:50ms:150ms", "lognormal:100ms:0.5", "choice:1ms"} {
		if _, err := ParseHandler(good); err != nil {
			t.Errorf("ParseHandler(%q): %v", good, err)
		}
	}
}
