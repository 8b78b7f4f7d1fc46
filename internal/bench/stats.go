package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// Percentile returns the nearest-rank q-quantile (0 <= q <= 1) of xs,
// sorted[int(q*n)] clamped to the last element, as the spec's F1 defines
// it. xs is sorted in place. It returns 0 for no samples.
func Percentile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	i := int(q * float64(len(xs)))
	if i >= len(xs) {
		i = len(xs) - 1
	}
	if i < 0 {
		i = 0
	}
	return xs[i]
}

// Median returns the median of xs (the mean of the two middle values for
// an even count). xs is sorted in place.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// RSS returns the resident set size (VmRSS) and its high-water mark
// (VmHWM) of this process, in bytes, from /proc/self/status.
func RSS() (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	found := 0
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		var dst *int64
		switch string(f[0]) {
		case "VmRSS:":
			dst = &rss
		case "VmHWM:":
			dst = &hwm
		default:
			continue
		}
		kb, perr := strconv.ParseInt(string(f[1]), 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("status %s: %w", f[0], perr)
		}
		*dst = kb * 1024
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("VmRSS/VmHWM not found in /proc/self/status")
	}
	return rss, hwm, nil
}

// CPUTime is the user+system CPU time this process has used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
