package loadgen

import (
	"math/bits"
	"slices"
	"time"
)

// Percentile is nearest-rank, as in the seed's simulator and `coldstart sim`:
// the value at index int(q*n) of the sorted samples (clamped to n-1). With
// this definition p50 of two samples is the larger one.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(q * float64(n))
	if i >= n {
		i = n - 1
	}
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

// maxExactSamples bounds the memory of one series (8 bytes a sample). Past
// it, percentiles come from the histogram (relative error under 0.4%).
const maxExactSamples = 1 << 22

// series is one latency distribution: exact samples up to maxExactSamples,
// plus a log-bucket histogram that is always kept (cheap live quantiles for
// the progress line, and the fallback past the cap).
type series struct {
	n        int64
	sum      time.Duration
	max      time.Duration
	samples  []time.Duration
	overflow bool
	h        logHist
}

func (s *series) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.n++
	s.sum += d
	if d > s.max {
		s.max = d
	}
	if len(s.samples) < maxExactSamples {
		s.samples = append(s.samples, d)
	} else {
		s.overflow = true
	}
	s.h.add(d)
}

// liveQuantile is the histogram's nearest-rank quantile (no sorting).
func (s *series) liveQuantile(q float64) time.Duration {
	return min(s.h.quantile(q), s.max)
}

// Percentiles summarizes a latency distribution in milliseconds.
type Percentiles struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// percentiles sorts the samples (in place) and reads the quantiles.
func (s *series) percentiles() Percentiles {
	if s.n == 0 {
		return Percentiles{}
	}
	p := Percentiles{N: s.n, Mean: ms(s.sum / time.Duration(s.n)), Max: ms(s.max)}
	if s.overflow {
		p.P50, p.P90, p.P99 = ms(s.liveQuantile(0.5)), ms(s.liveQuantile(0.9)), ms(s.liveQuantile(0.99))
		return p
	}
	slices.Sort(s.samples)
	p.P50 = ms(Percentile(s.samples, 0.5))
	p.P90 = ms(Percentile(s.samples, 0.9))
	p.P99 = ms(Percentile(s.samples, 0.99))
	return p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// logHist is an HDR-style histogram over microseconds: values below 256 us
// are exact, above that each power of two is cut into 128 buckets, so a
// bucket's width is under 1/128 of its value (its midpoint is within 0.4%).
type logHist struct {
	counts []int64
	n      int64
}

const (
	histLinear = 256 // exact region, us
	histSub    = 128 // buckets per power of two above it
)

func histIndex(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 8 // leaves an 8-bit mantissa in [128, 256)
	mant := us >> uint(shift)
	return histLinear + (shift-1)*histSub + int(mant-histSub)
}

// histValue is the midpoint of bucket i, in microseconds.
func histValue(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	j := i - histLinear
	shift := j/histSub + 1
	mant := uint64(j%histSub + histSub)
	return mant<<uint(shift) + (uint64(1)<<uint(shift))/2
}

func (h *logHist) add(d time.Duration) {
	i := histIndex(uint64(d / time.Microsecond))
	if i >= len(h.counts) {
		h.counts = append(h.counts, make([]int64, i+1-len(h.counts))...)
	}
	h.counts[i]++
	h.n++
}

func (h *logHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var cum int64
	for i, c := range h.counts {
		cum += c
		if cum > rank {
			return time.Duration(histValue(i)) * time.Microsecond
		}
	}
	return time.Duration(histValue(len(h.counts)-1)) * time.Microsecond
}
