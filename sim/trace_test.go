package sim

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	cases := []struct {
		name, in string
		line     int   // of the error, 0 for none
		err      error // its kind
		events   int
	}{
		{"minimal", "time_ms,function,duration_ms\n0,f,80\n", 0, nil, 1},
		{"memory and CRLF", "time_ms,function,duration_ms,memory_mb\r\n1.5,f,80,1024\r\n2,g,10,\r\n", 0, nil, 2},
		{"columns in any order", "function,duration_ms,time_ms\nf,80,3\n", 0, nil, 1},
		{"comments and blanks", "# made by hand\n\ntime_ms,function,duration_ms\n\n# x\n5,f,1\n", 0, nil, 1},
		{"exponent", "time_ms,function,duration_ms\n1e3,f,8E1\n", 0, nil, 1},
		{"header only", "time_ms,function,duration_ms\n", 0, nil, 0},
		{"no header", "", 1, ErrHeader, 0},
		{"missing column", "time_ms,function\n1,f\n", 1, ErrHeader, 0},
		{"unknown column", "time_ms,function,duration_ms,cpu\n", 1, ErrHeader, 0},
		{"duplicate column", "time_ms,function,duration_ms,time_ms\n", 1, ErrHeader, 0},
		{"too few fields", "time_ms,function,duration_ms\n1,f,80\n2,f\n", 3, ErrFields, 0},
		{"too many fields", "time_ms,function,duration_ms\n1,f,80,9\n", 2, ErrFields, 0},
		{"negative time", "time_ms,function,duration_ms\n-1,f,80\n", 2, ErrValue, 0},
		{"nan", "time_ms,function,duration_ms\nNaN,f,80\n", 2, ErrValue, 0},
		{"inf duration", "time_ms,function,duration_ms\n1,f,Inf\n", 2, ErrValue, 0},
		{"hex", "time_ms,function,duration_ms\n0x10,f,80\n", 2, ErrValue, 0},
		{"huge time", "time_ms,function,duration_ms\n1e300,f,80\n", 2, ErrValue, 0},
		{"empty function", "time_ms,function,duration_ms\n1,,80\n", 2, ErrValue, 0},
		{"memory out of range", "time_ms,function,duration_ms,memory_mb\n1,f,80,64\n", 2, ErrValue, 0},
		{"memory conflict", "time_ms,function,duration_ms,memory_mb\n1,f,80,512\n2,f,80,1024\n", 3, ErrConflict, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := ReadCSV(strings.NewReader(c.in), "t.csv")
			if c.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(tr.Events) != c.events {
					t.Fatalf("%d events, want %d", len(tr.Events), c.events)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, c.err) || pe.Line != c.line {
				t.Fatalf("error %v, want %v on line %d", err, c.err, c.line)
			}
		})
	}
}

func TestReadCSVValuesAndOrder(t *testing.T) {
	in := "time_ms,function,duration_ms,memory_mb\n20,b,5,256\n10,a,7.25,\n10,b,1,\n0.001,a,0,\n"
	tr, err := ReadCSV(strings.NewReader(in), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{T: 0.000001, DurMs: 0, Fn: 1}, {T: 0.01, DurMs: 7.25, Fn: 1}, {T: 0.01, DurMs: 1, Fn: 0}, {T: 0.02, DurMs: 5, Fn: 0}}
	for i, e := range tr.Events {
		if e != want[i] {
			t.Fatalf("event %d = %+v, want %+v (sorted by time, ties in file order)", i, e, want[i])
		}
	}
	if tr.Functions[0].MemoryMB != 256 || tr.Functions[1].MemoryMB != 0 || tr.Functions[0].Account != DefaultAccount {
		t.Fatalf("functions %+v", tr.Functions)
	}
}

// Time parsing must land on the float nearest the decimal, which is what
// the seed's Python holds: formatScaled and parseTimeMs invert each other
// for every float, including those where t*1000/1000 != t.
func TestTimeRoundTripIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	vals := []float64{0, 1e-9, 0.1, 0.3, 7.826296884696085e-3, 123456.789, 5e-324, 1e9}
	for i := 0; i < 100000; i++ {
		vals = append(vals, rng.ExpFloat64()*math.Pow(10, float64(rng.IntN(12)-6)))
	}
	naive := 0
	for _, v := range vals {
		s := formatScaled(v, 3)
		got, err := parseTimeMs(s)
		if err != nil || got != v {
			t.Fatalf("%v -> %q -> %v, %v", v, s, got, err)
		}
		if ms := v * 1000; ms/1000 != v {
			naive++
		}
	}
	if naive == 0 {
		t.Fatal("expected some values where multiplying and dividing by 1000 loses the float")
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	h, _ := ParseHandler("uniform:1ms:900ms")
	tr, err := Generate([]ShapeSpec{{Name: "a", Shape: ShapePoisson, Rate: 30, Duration: 20e9, Seed: 1, Handler: h, MemoryMB: 1024},
		{Name: "b", Shape: ShapeSteady, Rate: 3, Duration: 20e9, Seed: 1, Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, tr); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCSV(&b, "rt")
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Events) != len(tr.Events) || back.Functions[0] != tr.Functions[0] {
		t.Fatalf("round trip changed the trace: %+v vs %+v", back.Functions, tr.Functions)
	}
	for i := range tr.Events {
		if back.Events[i] != tr.Events[i] {
			t.Fatalf("event %d: %+v, want %+v", i, back.Events[i], tr.Events[i])
		}
	}
}

// FuzzReadCSV: no input panics; what parses is sorted, finite and
// non-negative, and writes back to a trace that parses to the same events.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("time_ms,function,duration_ms\n0,f,80\n1.5,g,0.25\n"))
	f.Add([]byte("time_ms,function,duration_ms,memory_mb\n3e2,f,80,1024\n1,f,1,\n"))
	f.Add([]byte("function,time_ms,duration_ms\r\nf,1,2\r\n"))
	f.Add([]byte("time_ms,function,duration_ms\n-1,f,80\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ReadCSV(bytes.NewReader(data), "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for i, e := range tr.Events {
			if e.T < 0 || e.DurMs < 0 || math.IsNaN(e.T) || math.IsInf(e.DurMs, 0) || int(e.Fn) >= len(tr.Functions) ||
				i > 0 && e.T < tr.Events[i-1].T {
				t.Fatalf("bad event %d: %+v", i, e)
			}
		}
		var b bytes.Buffer
		if err := WriteCSV(&b, tr); err != nil {
			t.Fatal(err)
		}
		back, err := ReadCSV(&b, "again")
		if err != nil {
			t.Fatalf("written trace does not parse: %v\n%s", err, b.String())
		}
		if len(back.Events) != len(tr.Events) {
			t.Fatalf("%d events after round trip, want %d", len(back.Events), len(tr.Events))
		}
		for i := range tr.Events {
			a, b := back.Events[i], tr.Events[i]
			if a.T != b.T || a.DurMs != b.DurMs || back.Functions[a.Fn].Name != tr.Functions[b.Fn].Name {
				t.Fatalf("event %d: %+v, want %+v", i, a, b)
			}
		}
	})
}
