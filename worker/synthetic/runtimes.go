package synthetic

import (
	"strings"
	"time"
)

// runtimeInit holds the median init duration (runtime + function init) per
// runtime family, read off the lambda-perf measurements of 2026-08-22 (zip,
// x86_64, 512 MB, init_ms_median: python3.9-3.14 74-101 ms, nodejs20-24
// 128-139 ms, go 50 ms, rust 16 ms, java8-25 180-284 ms, dotnet8/10
// 156-168 ms, ruby3.2-3.4 217-230 ms). Sigma widens them towards the seed's
// ranges (python/node 50-150 ms, go 30-80 ms, java 200-2000 ms).
var runtimeInit = []struct {
	prefix string
	median time.Duration
	sigma  float64
}{
	{"python", 80 * time.Millisecond, 0.25},
	{"nodejs", 138 * time.Millisecond, 0.25},
	{"node", 138 * time.Millisecond, 0.25},
	{"go", 50 * time.Millisecond, 0.2},
	{"provided", 50 * time.Millisecond, 0.2},
	{"rust", 16 * time.Millisecond, 0.2},
	{"java", 234 * time.Millisecond, 0.6},
	{"dotnet", 162 * time.Millisecond, 0.4},
	{"ruby", 228 * time.Millisecond, 0.25},
}

// sandboxCreate is phase 1 (microVM, network, code mount); the seed gives
// 10-80 ms.
var sandboxCreate = Dist{Kind: Uniform, A: 10 * time.Millisecond, B: 80 * time.Millisecond}

// DefaultProfile returns the profile for a runtime name (e.g. "python3.12",
// "java21", "provided.al2023"); unknown names get the python figures. The
// handler duration defaults to 80 ms, the seed's handler.
func DefaultProfile(runtime string) Profile {
	r := strings.ToLower(runtime)
	m := runtimeInit[0]
	for _, ri := range runtimeInit {
		if strings.HasPrefix(r, ri.prefix) {
			m = ri
			break
		}
	}
	// Runtime init takes two thirds of the measured init, function init the
	// rest; both log-normal around their share of the median.
	return Profile{
		SandboxCreate: sandboxCreate,
		RuntimeInit:   Dist{Kind: LogNormal, A: m.median * 2 / 3, Sigma: m.sigma},
		FunctionInit:  Dist{Kind: LogNormal, A: m.median / 3, Sigma: m.sigma},
		Duration:      FixedDist(80 * time.Millisecond),
	}
}
