package sim

import (
	"math"
	"math/rand/v2"
	"testing"
)

// evictAt is the first float at which Python's (now - last) >= ttl holds.
func TestEvictAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	check := func(last, ttl float64) {
		x := evictAt(last, ttl)
		prev := math.Nextafter(x, math.Inf(-1))
		if !(x-last >= ttl) || prev >= last && prev-last >= ttl {
			t.Fatalf("evictAt(%v, %v) = %v: not the first float that evicts", last, ttl, x)
		}
	}
	for _, c := range [][2]float64{{0.1, 0.2}, {0.30000000000000004, 600}, {1e-9, 1.5}, {12345.678, 0.04}, {0, 600}, {1e12, 1e-3}} {
		check(c[0], c[1])
	}
	for i := 0; i < 100000; i++ {
		check(rng.Float64()*math.Pow(10, float64(rng.IntN(10)-3)), rng.Float64()*math.Pow(10, float64(rng.IntN(6)-2)))
	}
	if !math.IsInf(evictAt(1, math.Inf(1)), 1) {
		t.Fatal("an infinite TTL should never evict")
	}
}

// The seed's clock: a sandbox that ends exactly when a request arrives is
// free for it, and one idle for exactly the TTL is evicted.
func TestSeedModelBoundaries(t *testing.T) {
	cfg := DefaultSeedConfig()
	cfg.ColdStartMs, cfg.KeepAliveS = 0, 1
	tr := &Trace{Functions: []Function{{Name: "f", Account: DefaultAccount}},
		Events: []Event{{T: 0, DurMs: 500}, {T: 0.5, DurMs: 500}, {T: 2, DurMs: 1}, {T: 3.0001, DurMs: 1}}}
	// 0: cold, ends 0.5. 0.5: warm (busy_until <= now), ends 1.0.
	// 2: idle exactly 1 s = TTL: evicted, cold. 3.0001: idle 0.9991 s, warm.
	r := RunSeed(tr, cfg).Total
	if r.Cold != 2 || r.Warm != 2 || r.BilledMs != 1002 {
		t.Fatalf("%+v: want 2 cold, 2 warm, 1002 ms", r)
	}
}
