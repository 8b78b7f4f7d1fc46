package sim

import (
	"os"
	"testing"
)

func TestScratch(t *testing.T) {
	for _, n := range []string{"steady", "light", "spike"} {
		f, _ := os.Open("/tmp/f1/" + n + ".csv")
		tr, err := ReadCSV(f, n)
		if err != nil {
			t.Fatal(err)
		}
		r := RunSeed(tr, DefaultSeedConfig())
		t.Logf("%s %+v", n, r.Total)
	}
}
