package sim

import (
	"math"
	"testing"
	"time"
)

func TestHybridWindows(t *testing.T) {
	const ttl = 10 * time.Minute
	cfg := DefaultHybrid(ttl)
	// scale computes as the policy does, in float64 at run time.
	scale := func(d time.Duration, f float64) time.Duration { return time.Duration(float64(d) * f) }
	up, down := 1+cfg.Margin, 1-cfg.Margin
	cases := []struct {
		name   string
		idle   []time.Duration // idle times fed to the histogram
		pw, ka time.Duration
		hist   bool
	}{
		{"no history", nil, 0, ttl, false},
		{"too few samples", repeat(30*time.Minute, 9), 0, ttl, false},
		{
			// All idle times in the 30-minute bin: pre-warm at 30 min less
			// 10%, stay until the bin's end plus 10%.
			"periodic 30 min", repeat(30*time.Minute+10*time.Second, 20),
			scale(30*time.Minute, down), scale(31*time.Minute, up) - scale(30*time.Minute, down), true,
		},
		{
			// Idle times of 0: no pre-warm, keep alive for the first bin.
			"busy app", repeat(0, 50), 0, scale(time.Minute, up), true,
		},
		{"mostly beyond 4 h", append(repeat(5*time.Hour, 10), repeat(time.Minute, 5)...), 0, ttl, false},
		{"flat histogram", spread(240), 0, ttl, false},
		{
			// Head at the 5th percentile, tail at the 99th.
			"two modes", append(repeat(2*time.Minute, 50), repeat(40*time.Minute, 50)...),
			scale(2*time.Minute, down), scale(41*time.Minute, up) - scale(2*time.Minute, down), true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHybrid(cfg, 1)
			a := &h.apps[0]
			for _, it := range c.idle {
				h.record(a, it)
			}
			pw, ka := h.windows(0)
			if pw != c.pw || ka != c.ka || a.hist != c.hist {
				t.Fatalf("windows = %v, %v (histogram %v); want %v, %v (%v)", pw, ka, a.hist, c.pw, c.ka, c.hist)
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// spread puts one idle time in each of the first n bins.
func spread(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i)*time.Minute + time.Second
	}
	return out
}

// Idle times come from arrivals after completions; an arrival while the app
// is busy counts as no idle time, and the first arrival as none at all.
func TestHybridIdleTimes(t *testing.T) {
	h := newHybrid(DefaultHybrid(time.Minute), 1)
	a := &h.apps[0]
	h.arrival(0, 0, false) // first ever: nothing to measure
	h.completed(0, time.Second)
	h.arrival(0, 3*time.Minute+time.Second, false)  // idle 3 min: bin 3
	h.arrival(0, 3*time.Minute+2*time.Second, true) // busy: bin 0
	if a.n != 2 || a.bins[3] != 1 || a.bins[0] != 1 {
		t.Fatalf("bins %v (n %d)", a.bins[:5], a.n)
	}
}

func TestBinCV(t *testing.T) {
	cases := []struct {
		counts []uint32
		want   float64
	}{
		{[]uint32{5, 5, 5, 5}, 0},
		{[]uint32{4, 0, 0, 0}, 2},                      // mean 1, sample sd 2
		{[]uint32{1, 2, 3, 4}, math.Sqrt(5.0/3) / 2.5}, // mean 2.5, sample variance 5/3
	}
	for _, c := range cases {
		var n int64
		var sq float64
		for _, x := range c.counts {
			n += int64(x)
			sq += float64(x) * float64(x)
		}
		if got := binCV(n, sq, len(c.counts)); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("binCV(%v) = %v, want %v", c.counts, got, c.want)
		}
	}
}
