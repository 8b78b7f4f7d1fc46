package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		xs   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 3 * time.Millisecond}, // sorted[int(0.5*4)] = sorted[2]
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		if got := Percentile(tc.xs, tc.q); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.xs, tc.q, got, tc.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(tc.xs); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	rss, hwm, err := parseStatus([]byte("Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\n"))
	if err != nil || rss != 1024*1024 || hwm != 2048*1024 {
		t.Fatalf("got %d %d %v", rss, hwm, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing fields should fail")
	}
	if _, _, err := RSS(); err != nil {
		t.Fatal(err)
	}
}
