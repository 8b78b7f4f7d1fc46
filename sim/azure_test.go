package sim

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

const azureHeader3 = "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n"

func TestReadAzure(t *testing.T) {
	h, _ := ParseHandler("80ms")
	in := azureHeader3 + "o1,a1,f1,http,2,0,1\no1,a1,f2,timer,0,3,0\no2,a2,f3,queue,,1,0\n"
	dur := "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n" +
		"o1,a1,f2,100,4,10,200,10,10,50,100,150,190,200\n"
	tr, err := ReadAzure(strings.NewReader(in), "inv", strings.NewReader(dur), "dur", AzureOptions{Seed: 1, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Functions) != 3 || len(tr.Events) != 7 {
		t.Fatalf("%d functions, %d events; want 3, 7", len(tr.Functions), len(tr.Events))
	}
	if f := tr.Functions[0]; f.App != "a1" || f.Account != "o1" || f.Name != "f1" {
		t.Fatalf("function 0 = %+v", f)
	}
	perMinute := map[[2]int]int{}
	for _, e := range tr.Events {
		perMinute[[2]int{int(e.Fn), int(e.T / 60)}]++
		switch e.Fn {
		case 1: // from the durations file
			if e.DurMs < 10 || e.DurMs > 200 {
				t.Fatalf("f2 duration %v outside its percentiles", e.DurMs)
			}
		default:
			if e.DurMs != 80 {
				t.Fatalf("duration %v, want the default handler's 80", e.DurMs)
			}
		}
	}
	want := map[[2]int]int{{0, 0}: 2, {0, 2}: 1, {1, 1}: 3, {2, 1}: 1}
	for k, n := range want {
		if perMinute[k] != n {
			t.Fatalf("function %d minute %d: %d arrivals, want %d (%v)", k[0], k[1]+1, perMinute[k], n, perMinute)
		}
	}
	// The same seed spreads the same way; rows are independent of order.
	swapped := azureHeader3 + "o1,a1,f2,timer,0,3,0\no1,a1,f1,http,2,0,1\no2,a2,f3,queue,,1,0\n"
	tr2, _ := ReadAzure(strings.NewReader(swapped), "inv", strings.NewReader(dur), "dur", AzureOptions{Seed: 1, Handler: h})
	for _, e := range tr.Events {
		if !hasEvent(tr2, tr.Functions[e.Fn].Name, e.T) {
			t.Fatalf("reordering rows moved an arrival of %s at %v", tr.Functions[e.Fn].Name, e.T)
		}
	}
	limited, _ := ReadAzure(strings.NewReader(in), "inv", nil, "", AzureOptions{Seed: 1, Handler: h, Limit: 1})
	if len(limited.Functions) != 1 || len(limited.Events) != 3 {
		t.Fatalf("--azure-limit 1: %d functions, %d events", len(limited.Functions), len(limited.Events))
	}
}

func hasEvent(tr *Trace, fn string, at float64) bool {
	for _, e := range tr.Events {
		if tr.Functions[e.Fn].Name == fn && e.T == at {
			return true
		}
	}
	return false
}

func TestReadAzureErrors(t *testing.T) {
	h, _ := ParseHandler("80ms")
	cases := []struct {
		name, in string
		line     int
		err      error
	}{
		{"empty", "", 1, ErrHeader},
		{"short header", "HashOwner,HashApp,HashFunction,Trigger\n", 1, ErrHeader},
		{"wrong key", "Owner,HashApp,HashFunction,Trigger,1\n", 1, ErrHeader},
		{"minutes out of order", "HashOwner,HashApp,HashFunction,Trigger,1,3\n", 1, ErrHeader},
		{"field count", azureHeader3 + "o,a,f,http,1,2\n", 2, ErrFields},
		{"negative count", azureHeader3 + "o,a,f,http,1,-2,0\n", 2, ErrValue},
		{"text count", azureHeader3 + "o,a,f,http,1,x,0\n", 2, ErrValue},
		{"empty name", azureHeader3 + "o,,f,http,1,0,0\n", 2, ErrValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadAzure(strings.NewReader(c.in), "inv", nil, "", AzureOptions{Handler: h})
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, c.err) || pe.Line != c.line {
				t.Fatalf("error %v, want %v on line %d", err, c.err, c.line)
			}
		})
	}
	badDur := "HashOwner,HashApp,HashFunction,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n" +
		"o,a,f,5,4,3,2,1,1,1\n"
	_, err := ReadAzure(strings.NewReader(azureHeader3), "inv", strings.NewReader(badDur), "dur", AzureOptions{Handler: h})
	if !errors.Is(err, ErrValue) {
		t.Fatalf("decreasing percentiles: %v, want ErrValue", err)
	}
}

// The duration draw follows the published percentiles: its median is the
// file's median and nothing falls outside [p0, p100].
func TestPercentileHandler(t *testing.T) {
	h := &percentileHandler{ms: [7]float64{1, 2, 10, 50, 60, 500, 1000}}
	r := rand.New(rand.NewPCG(1, 1))
	below := 0
	for i := 0; i < 100000; i++ {
		v := h.DrawMs(r)
		if v < 1 || v > 1000 {
			t.Fatalf("draw %v outside [1, 1000]", v)
		}
		if v < 50 {
			below++
		}
	}
	if math.Abs(float64(below)/100000-0.5) > 0.01 {
		t.Fatalf("%d of 100000 draws below the median", below)
	}
}

// FuzzReadAzure: no input panics, errors are typed with a line, and what
// parses has one event per counted invocation, inside its minute.
func FuzzReadAzure(f *testing.F) {
	f.Add([]byte(azureHeader3 + "o,a,f,http,1,2,3\n"))
	f.Add([]byte(azureHeader3 + "o,a,f,http,0,0,0\no,a,g,timer,5,,1\n"))
	f.Add([]byte("HashOwner,HashApp,HashFunction,Trigger,1\n\xef\xbb\xbfo,a,f,http,9\n"))
	h, _ := ParseHandler("80ms")
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Count(data, []byte(",")) > 5000 || longDigitRun(data, 5) {
			return // counts are unbounded; keep each run small
		}
		tr, err := ReadAzure(bytes.NewReader(data), "fuzz", nil, "", AzureOptions{Seed: 3, Handler: h})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for i, e := range tr.Events {
			if e.T < 0 || int(e.Fn) >= len(tr.Functions) || i > 0 && e.T < tr.Events[i-1].T {
				t.Fatalf("bad event %d: %+v", i, e)
			}
		}
	})
}

func FuzzReadAzureDurations(f *testing.F) {
	hdr := "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n"
	f.Add([]byte(hdr + "o,a,f,100,4,10,200,10,10,50,100,150,190,200\n"))
	f.Add([]byte(hdr + "o,a,f,1,1,1,1,1,1,1,1,1,1,1\n"))
	f.Add([]byte("HashOwner,HashApp\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := readAzureDurations(bytes.NewReader(data), "fuzz")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		r := rand.New(rand.NewPCG(1, 2))
		for k, h := range m {
			p := h.(*percentileHandler)
			if v := h.DrawMs(r); v < p.ms[0] || v > p.ms[6] || math.IsNaN(v) {
				t.Fatalf("%s: draw %v outside [%v, %v]", k, v, p.ms[0], p.ms[6])
			}
		}
	})
}

func longDigitRun(b []byte, n int) bool {
	run := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			if run++; run > n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}
