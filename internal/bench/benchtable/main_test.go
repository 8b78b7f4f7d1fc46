package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `goos: linux
BenchmarkP1WarmInvoke-2   	     890	    959962 ns/op	         0 cold	         0.2113 p50-ms
--- BENCH: BenchmarkP1WarmInvoke-2
BenchmarkP1WarmInvoke-2   	    3206	    798848 ns/op	         0 cold	         0.2512 p50-ms
BenchmarkP7Scale 1 33881407890 ns/op 183.7 peak-MiB
PASS
`
	runs, order, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "BenchmarkP1WarmInvoke" || order[1] != "BenchmarkP7Scale" {
		t.Fatalf("order %v", order)
	}
	if got := runs["BenchmarkP1WarmInvoke"]["p50-ms"]; len(got) != 2 || got[1] != 0.2512 {
		t.Fatalf("p50-ms %v", got)
	}
	if got := runs["BenchmarkP7Scale"]["peak-MiB"]; len(got) != 1 || got[0] != 183.7 {
		t.Fatalf("peak-MiB %v", got)
	}
	if _, _, err := parse(strings.NewReader("BenchmarkX-2 1 abc ns/op\n")); err == nil {
		t.Fatal("a bad value should fail")
	}
}
