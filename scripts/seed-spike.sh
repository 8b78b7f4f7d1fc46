#!/usr/bin/env bash
# The seed's spike (500 rps for 30 s, 80 ms handler, 180 ms cold start,
# 10 min keep-alive, 512 MB) run with `coldstart load` against `coldstart up`,
# printed beside what the seed article's own simulator code gives for the
# same shape (sim/testdata/serverless_sim.py, logic unchanged).
#
#   scripts/seed-spike.sh            # needs ports 9000-9001 and 9100 free
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
work=$(mktemp -d)
bin=$work/coldstart
go build -o "$bin" ./cmd/coldstart

"$bin" up --data "$work/data" >"$work/up.out" 2>"$work/up.err" &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q '^ready$' "$work/up.out" && break; sleep 0.1; done
grep -q '^ready$' "$work/up.out" || { cat "$work/up.err"; exit 1; }

"$bin" function create spike --runtime synthetic --duration 80ms --cold-start 180ms \
  --keep-alive 10m --memory 512 --timeout 3s >/dev/null
"$bin" load --function spike --rate 500 --duration 30s --shape poisson --seed 7 \
  --concurrency 1024 --json >"$work/live.json"
python3 sim/testdata/serverless_sim.py --rate 500 --duration 30 --dist 80 --seed 7 \
  --cold-start-ms 180 --ttl-s 600 >"$work/seed.json"

python3 - "$work/live.json" "$work/seed.json" <<'PY'
import json, sys
live, seed = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
srv = live["server_ms"]
rows = [
    ("invocations", seed["invocations"], live["invocations"]),
    ("cold starts", seed["cold_starts"], live["cold"]),
    ("warm starts", seed["warm_starts"], live["warm"]),
    ("p50 ms (init + handler)", seed["p50_ms"], round(srv["p50"], 1)),
    ("p99 ms (init + handler)", seed["p99_ms"], round(srv["p99"], 1)),
    ("p50 ms (client latency)", "-", round(live["latency_ms"]["p50"], 1)),
    ("p99 ms (client latency)", "-", round(live["latency_ms"]["p99"], 1)),
    ("throttled / errors", "-", "%d / %d" % (live["throttled"], live["errors"])),
]
print("%-26s %14s %14s" % ("seed spike, 500 rps x 30 s", "seed's sim", "coldstart up"))
for name, s, l in rows:
    print("%-26s %14s %14s" % (name, s, l))
PY
