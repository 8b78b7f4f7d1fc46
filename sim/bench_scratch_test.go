package sim

import (
	"os"
	"testing"
)

func BenchmarkScratchSeed(b *testing.B) {
	f, _ := os.Open("/tmp/f1/1m.csv")
	tr, err := ReadCSV(f, "x")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		RunSeed(tr, DefaultSeedConfig())
	}
	b.ReportMetric(float64(len(tr.Events))*float64(b.N)/b.Elapsed().Seconds(), "inv/s")
}
