# serverless_sim.py — simulate a Lambda-style platform with cold starts,
# warm-pool TTL, concurrency bursts, and per-ms billing.
#
# The model below (Sandbox, Platform, simulate) is the seed article's code,
# unchanged. Only the output changed: instead of printing three scenarios, the
# harness at the bottom writes the arrivals and handler durations it fed to
# Platform.invoke as a CSV trace (time_ms,function,duration_ms) and the
# result dict as JSON, so that `coldstart sim --model seed` can be checked
# against it (quality goal F1). It can also replay a trace through the same
# Platform and time it (quality goal P6).
import random
import heapq
from dataclasses import dataclass
@dataclass
class Sandbox:
    id: int
    last_used: float # epoch seconds
    busy_until: float # epoch seconds when current invocation completes
class Platform:
    def __init__(self, cold_start_ms=180, warm_pool_ttl_s=600, ms_per_gb_s=0.0000166667):
        self.cold_start_ms = cold_start_ms
        self.warm_pool_ttl_s = warm_pool_ttl_s
        self.sandboxes: list[Sandbox] = []
        self.next_id = 0
        self.cold_starts = 0
        self.warm_starts = 0
        self.billed_ms = 0
        self.fn_memory_gb = 0.5
        self.ms_per_gb_s = ms_per_gb_s
    def _evict_idle(self, now):
        self.sandboxes = [s for s in self.sandboxes
                          if (now - s.last_used) < self.warm_pool_ttl_s
                          or s.busy_until > now]
    def invoke(self, now, handler_ms):
        self._evict_idle(now)
        # Find a free warm sandbox
        free = [s for s in self.sandboxes if s.busy_until <= now]
        if free:
            sb = free[0]; self.warm_starts += 1
            duration_ms = handler_ms
        else:
            self.next_id += 1
            sb = Sandbox(self.next_id, last_used=now, busy_until=now)
            self.sandboxes.append(sb)
            self.cold_starts += 1
            duration_ms = self.cold_start_ms + handler_ms
        sb.busy_until = now + duration_ms / 1000.0
        sb.last_used = sb.busy_until
        self.billed_ms += duration_ms # rounded-up by platform; here we keep ms exact
        return duration_ms
    def cost_usd(self):
        gb_seconds = (self.billed_ms / 1000.0) * self.fn_memory_gb
        return gb_seconds * self.ms_per_gb_s * 1000 # ms_per_gb_s priced per ms
def simulate(arrival_rate_rps, duration_s, handler_ms_dist, seed=7):
    random.seed(seed)
    p = Platform()
    durations = []
    t = 0.0
    inter = 1.0 / arrival_rate_rps
    while t < duration_s:
        t += random.expovariate(arrival_rate_rps)
        if t > duration_s: break
        h = random.choice(handler_ms_dist)
        d = p.invoke(t, h); durations.append(d)
    durations.sort()
    p99 = durations[int(0.99 * len(durations))]
    return {
        "invocations": len(durations),
        "cold_starts": p.cold_starts,
        "warm_starts": p.warm_starts,
        "p50_ms": durations[len(durations)//2],
        "p99_ms": p99,
        "billed_ms": p.billed_ms,
    }


# ---------------------------------------------------------------------------
# coldstart harness: output only. Nothing below changes the model above.
# ---------------------------------------------------------------------------
import argparse
import json
import sys
import time
from decimal import Decimal

_SeedPlatform = Platform


def time_ms(t):
    """The exact decimal of t*1000: the shortest repr of t with its decimal
    point moved three places, so that parsing it back gives t itself."""
    return format(Decimal(repr(t)).scaleb(3), 'f')


def recording(cold_start_ms, ttl_s, sink):
    """A Platform that records every (now, handler_ms) simulate() feeds it."""
    class Recording(_SeedPlatform):
        def __init__(self):
            super().__init__(cold_start_ms=cold_start_ms, warm_pool_ttl_s=ttl_s)
            self.calls = []
            sink.append(self)

        def invoke(self, now, handler_ms):
            self.calls.append((now, handler_ms))
            return super().invoke(now, handler_ms)
    return Recording


def write_trace(path, calls):
    with open(path, 'w') as f:
        f.write('time_ms,function,duration_ms\n')
        for now, h in calls:
            f.write('%s,seed,%s\n' % (time_ms(now), h))


def read_trace(path):
    arrivals = []
    with open(path) as f:
        header = f.readline().strip().split(',')
        ti, di = header.index('time_ms'), header.index('duration_ms')
        for line in f:
            if not line.strip():
                continue
            cols = line.rstrip('\n').split(',')
            t = float(Decimal(cols[ti]).scaleb(-3))
            d = Decimal(cols[di])
            arrivals.append((t, int(d) if d == d.to_integral_value() else float(d)))
    return arrivals


def replay(arrivals, cold_start_ms, ttl_s):
    """Feeds a trace to Platform.invoke in order and builds simulate()'s
    result dict the same way; returns it with the loop's wall time."""
    p = _SeedPlatform(cold_start_ms=cold_start_ms, warm_pool_ttl_s=ttl_s)
    durations = []
    start = time.perf_counter()
    for t, h in arrivals:
        d = p.invoke(t, h); durations.append(d)
    durations.sort()
    seconds = time.perf_counter() - start
    return {
        "invocations": len(durations),
        "cold_starts": p.cold_starts,
        "warm_starts": p.warm_starts,
        "p50_ms": durations[len(durations)//2],
        "p99_ms": durations[int(0.99 * len(durations))],
        "billed_ms": p.billed_ms,
    }, seconds


def as_number(x):
    """An int when integral, as the seed's literals are (180, 600, [80])."""
    x = float(x)
    return int(x) if x.is_integer() else x


def main(argv):
    ap = argparse.ArgumentParser(description='the seed simulator, with trace output')
    ap.add_argument('--rate', type=float, default=50)
    ap.add_argument('--duration', type=float, default=300)
    ap.add_argument('--dist', default='80', help='handler ms choices, e.g. 80,80,80,200')
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--cold-start-ms', type=float, default=180)
    ap.add_argument('--ttl-s', type=float, default=600)
    ap.add_argument('--trace', help='write the arrivals here (CSV)')
    ap.add_argument('--json', help='write the result dict here')
    ap.add_argument('--replay', help='replay this CSV trace instead of simulate()')
    a = ap.parse_args(argv)
    cold, ttl = as_number(a.cold_start_ms), as_number(a.ttl_s)
    if a.replay:
        start = time.perf_counter()
        arrivals = read_trace(a.replay)
        parse = time.perf_counter() - start
        result, seconds = replay(arrivals, cold, ttl)
        result['seconds'] = seconds
        result['parse_seconds'] = parse
    else:
        global Platform
        sink = []
        Platform = recording(cold, ttl, sink)
        try:
            dist = [as_number(x) for x in a.dist.split(',')]
            result = simulate(as_number(a.rate), as_number(a.duration), dist, a.seed)
        finally:
            Platform = _SeedPlatform
        if a.trace:
            write_trace(a.trace, sink[-1].calls)
    text = json.dumps(result)
    if a.json:
        with open(a.json, 'w') as f:
            f.write(text + '\n')
    else:
        print(text)


if __name__ == '__main__':
    main(sys.argv[1:])
