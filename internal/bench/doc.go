// Package bench holds coldstart's performance benchmarks (quality goals P1,
// P2, P3, P4, P5 and P7). Each benchmark starts an in-process cluster shaped
// like `coldstart up` (3 placement nodes with placement.Tuned Raft timing on
// boltdb, 2 gateways, 3 workers, membership.Fast) and measures its figure
// beside a baseline taken in the same run, so that the ratio survives a
// noisy machine:
//
//	P1  warm invoke latency, 1 client       vs a bare net/http echo round trip
//	P2  warm throughput, 64 clients         vs the bare net/http echo ceiling
//	P3  cold invoke latency (delays 0)      vs a warm invoke of the same function
//	P4  process sandbox cold / warm         vs a bare fork/exec of the same binary
//	                                           until ready / a synthetic function's
//	                                           warm invoke and an HTTP round trip
//	P5  recovery after a leader/worker kill vs the configured detection timeouts
//	P7  RSS with 10,000 idle + 1,000 busy   vs the RSS before the cluster started
//
// P1 and P2 also run against a function with code (P1WarmInvokeProcess,
// P2WarmThroughputProcess: testdata/procfn, a tiny aws-lambda-go echo), with
// the same baselines. Two diagnostics run beside them: P1WarmInvokeSpare
// (P1 without the worker's warm-subscription churn) and ColdBurst1000
// (1,000 simultaneous cold starts and placement's leadership meanwhile).
//
// Run them all with internal/bench/run.sh, which prints a table of medians;
// BENCHMARKS.md at the repository root records the latest one.
//
// The package itself holds only pure helpers (percentiles, medians, RSS);
// the benchmarks live in its _test files.
package bench
