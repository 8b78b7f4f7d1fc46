#!/usr/bin/env bash
# Runs coldstart's performance benchmarks (goals P1, P2, P3, P4, P5, P7 of
# quality.md, and P8 of asynchronous invocations), each beside its same-run
# baseline, and prints a table of medians and the goal verdicts. About 12
# minutes on 2 cores.
#
#   internal/bench/run.sh              # everything
#   BENCH_OUT=/tmp/b internal/bench/run.sh   # keep the raw output there
#
# Every benchmark starts its own in-process cluster shaped like
# `coldstart up` (see internal/bench/doc.go). P7 runs once per process so
# that its RSS baseline is a fresh process.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
raw=$out/raw.txt
: >"$raw"
bin=$out/bench.test
go test -c -o "$bin" ./internal/bench
# worker/process's own benchmarks are P4's lower bound: a sandbox without
# the cluster around it.
pbin=$out/process.test
go test -c -o "$pbin" ./worker/process

pressure() { [ -r /proc/pressure/cpu ] && sed -n 1p /proc/pressure/cpu || echo "n/a"; }
{
	echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ uncommitted changes)')"
	echo "# date   $(date -u +%Y-%m-%dT%H:%MZ)   cores $(nproc)   $(go version | cut -d' ' -f3)"
	echo "# cpu pressure before: $(pressure)"
} | tee -a "$raw"

run() { "$bin" -test.run '^$' -test.timeout 10m "$@" 2>&1 | tee -a "$raw"; }
# The process package's tests find their test function relative to the
# package directory.
prun() { (cd worker/process && "$pbin" -test.run '^$' -test.timeout 10m "$@" 2>&1) | tee -a "$raw"; }

run -test.bench '^BenchmarkP1WarmInvoke(Spare)?$' -test.benchtime 2s -test.count 5
run -test.bench '^BenchmarkP2WarmThroughput$' -test.benchtime 2s -test.count 5
run -test.bench '^BenchmarkP3ColdStart$' -test.benchtime 200x -test.count 5
# P4 and the process rows of P1 and P2: a real aws-lambda-go function.
run -test.bench '^BenchmarkP4ProcessCold$' -test.benchtime 100x -test.count 5
run -test.bench '^BenchmarkP4ProcessWarm$' -test.benchtime 2s -test.count 5
run -test.bench '^Benchmark(P1WarmInvoke|P2WarmThroughput)Process$' -test.benchtime 2s -test.count 5
prun -test.bench . -test.count 5
run -test.bench '^BenchmarkP5LeaderKill$' -test.benchtime 9x -test.count 1
run -test.bench '^BenchmarkP5WorkerKill$' -test.benchtime 9x -test.count 1
run -test.bench '^BenchmarkP5WorkerPause$' -test.benchtime 9x -test.count 1
run -test.bench '^BenchmarkOverload20x$' -test.benchtime 1x -test.count 1
run -test.bench '^BenchmarkColdBurst1000$' -test.benchtime 3x -test.count 2
# P8: Event invocations accepted and dispatched, and platform idempotency
# (needs redis-server; skipped without it).
run -test.bench '^BenchmarkP8AcceptEvents$' -test.benchtime 10x -test.count 5
run -test.bench '^BenchmarkP8DispatchLag$' -test.benchtime 2x -test.count 5
run -test.bench '^BenchmarkIdempotencyOverhead$' -test.benchtime 3000x -test.count 5
for i in 1 2 3; do
	run -test.bench '^BenchmarkP7Scale$' -test.benchtime 1x -test.count 1
done

echo "# cpu pressure after: $(pressure)" | tee -a "$raw"
echo
go run ./internal/bench/benchtable <"$raw"
echo
echo "raw output: $raw"
