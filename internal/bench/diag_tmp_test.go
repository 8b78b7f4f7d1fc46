package bench

import (
	"net/http"
	"sort"
	"testing"
	"time"
)

func BenchmarkDiagSpare(b *testing.B) {
	c := upCluster(b, optsP1())
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(4)}
	createFunction(b, hc, gw, synthetic("p1"))
	prewarm(b, hc, []string{gw}, "p1", 4, 100*time.Millisecond)
	for i := 0; i < 200; i++ {
		invoke(hc, gw, "p1", payload100)
	}
	var warm []time.Duration
	for b.Loop() {
		r, _ := invoke(hc, gw, "p1", payload100)
		warm = append(warm, r.lat)
	}
	reportLatency(b, "", warm)
	sort.Slice(warm, func(i, j int) bool { return warm[i] > warm[j] })
	b.Logf("top: %v", warm[:10])
}

func BenchmarkDiagSingle(b *testing.B) {
	c := upCluster(b, optsP1())
	gw := c.GatewayURL(0)
	hc := &http.Client{Transport: newTransport(4)}
	createFunction(b, hc, gw, synthetic("p1"))
	for i := 0; i < 200; i++ {
		invoke(hc, gw, "p1", payload100)
	}
	var warm []time.Duration
	for b.Loop() {
		r, _ := invoke(hc, gw, "p1", payload100)
		warm = append(warm, r.lat)
	}
	reportLatency(b, "", warm)
	sort.Slice(warm, func(i, j int) bool { return warm[i] > warm[j] })
	b.Logf("top: %v", warm[:10])
}
