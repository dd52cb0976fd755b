"""Routing table at scale: 1,000,000 pins from a tenants_file (docs/control-plane.md, "Large tables").

Measures, each in a fresh interpreter so that one measurement cannot warm or bloat the
next:

- build: load_config (read, parse, validate every pin) + build_snapshot, the work a
  reload does before the swap; budget 2 s of wall time for 1,000,000 pins, judged on the
  median of --runs fresh processes (a busy neighbour on a small machine moves one run);
- RSS growth of that build, against the same interpreter before it;
- decide() per call with 100 pins and with 1,000,000: for pinned tenants drawn uniformly
  from the whole table, for 100 hot pinned tenants, and for unpinned (hash-placed)
  tenants. The lookup is a dict probe and does not grow with the table; uniform traffic
  over a table far larger than the CPU caches pays a few cache misses per call, which
  the hot column separates out.

    .venv/bin/python benchmarks/snapshot_scale.py [--pins N] [--small N] [--runs N] [--json]

Per-call figures are process CPU time (best pass), so that a neighbour's load does not
count as ours. Exit status 1 when the median build of the large table is over --budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

STAMPS = ("eu-1", "eu-2", "eu-3", "us-1", "us-2", "ap-1")
READ_ONLY_EVERY = 100     # 1 % of pins in object form: the realistic mix, not the fastest


def write_config(directory: str, pins: int) -> str:
    """A config with `pins` pins in tenants_file, written without holding them all."""
    path = os.path.join(directory, f"tenants-{pins}.json")
    with open(path, "w") as fh:
        fh.write("{")
        for i in range(pins):
            stamp = STAMPS[i % len(STAMPS)]
            value = f'{{"stamp":"{stamp}","mode":"read-only"}}' if i % READ_ONLY_EVERY == 7 else f'"{stamp}"'
            fh.write(f'{"," if i else ""}"tenant-{i:07d}":{value}')
        fh.write("}")
    stamps = "".join(
        f'[[stamps]]\nname = "{name}"\nregion = "{name[:2]}"\nbackends = ["10.0.{n}.10:8080", "10.0.{n}.11:8080"]\n\n'
        for n, name in enumerate(STAMPS))
    config = os.path.join(directory, f"router-{pins}.toml")
    with open(config, "w") as fh:
        fh.write(f'tenants_file = "{os.path.basename(path)}"\n\n[routing]\nsources = ["header"]\n\n{stamps}')
    return config


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Facts:
    __slots__ = ("method", "host", "tenant_header", "authorization", "geo", "client")

    def __init__(self, tenant: str) -> None:
        self.method, self.host, self.tenant_header = "GET", None, tenant
        self.authorization, self.geo, self.client = None, None, "192.0.2.1"


def per_call_ns(fn, facts: list, snap, health, repeats: int = 3) -> float:
    """Best of `repeats` passes over `facts`, in CPU nanoseconds per decide() call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time_ns()
        for f in facts:
            fn(f, snap, health, 0.0)
        best = min(best, (time.process_time_ns() - start) / len(facts))
    return best


def measure(config: str, pins: int, calls: int) -> dict:
    """Runs in the child: one build and the lookup costs, as a dict."""
    from router.config import load_config
    from router.core import ALL_HEALTHY, build_snapshot, decide

    rss_before = rss_mib()
    cpu_start, start = time.process_time(), time.perf_counter()
    valid = load_config(config)
    loaded = time.perf_counter()
    snap = build_snapshot(valid, loaded_at=time.time())
    built, cpu_built = time.perf_counter(), time.process_time()
    rss_after = rss_mib()
    assert len(snap.pins) == pins, (len(snap.pins), pins)

    rng = random.Random(1)
    # Uniform over every pin: each call likely misses the CPU caches, which is the cost of
    # a large table under traffic spread evenly over all of it.
    pinned = [Facts(f"tenant-{rng.randrange(pins):07d}") for _ in range(calls)]
    # 100 hot tenants: separates the table's size from the working set's.
    hot_ids = rng.sample(range(pins), min(100, pins))
    hot = [Facts(f"tenant-{rng.choice(hot_ids):07d}") for _ in range(calls)]
    unpinned = [Facts(f"new-{i}") for i in range(calls)]
    return {
        "pins": pins,
        "load_s": loaded - start,
        "snapshot_s": built - loaded,
        "build_s": built - start,
        "build_cpu_s": cpu_built - cpu_start,
        "rss_growth_mib": rss_after - rss_before,
        "decide_pinned_ns": per_call_ns(decide, pinned, snap, ALL_HEALTHY),
        "decide_hot_ns": per_call_ns(decide, hot, snap, ALL_HEALTHY),
        "decide_unpinned_ns": per_call_ns(decide, unpinned, snap, ALL_HEALTHY),
    }


def run_child(config: str, pins: int, calls: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", config, "--pins", str(pins), "--calls", str(calls)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pins", type=int, default=1_000_000, help="pins in the large table")
    parser.add_argument("--small", type=int, default=100, help="pins in the small table")
    parser.add_argument("--calls", type=int, default=100_000, help="decide() calls per pass")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per table size")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds the large build may take")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, args.pins, args.calls)))
        return 0

    with tempfile.TemporaryDirectory(prefix="stamp-router-bench-") as tmp:
        runs = {n: [run_child(config, n, args.calls) for _ in range(args.runs)]
                for n, config in ((n, write_config(tmp, n)) for n in (args.small, args.pins))}
    results = [{key: statistics.median(r[key] for r in rs) for key in rs[0]} for rs in runs.values()]
    builds = sorted(r["build_s"] for r in runs[args.pins])
    large = results[-1]
    ok = large["build_s"] <= args.budget
    if args.json:
        print(json.dumps({"median": results, "runs": list(runs.values()), "budget_s": args.budget,
                          "within_budget": ok}, indent=2))
    else:
        print(f"median of {args.runs} fresh processes per row; decide() is CPU time per call")
        print(f"{'pins':>10} {'load s':>8} {'snapshot s':>11} {'build s':>8} {'build CPU s':>12} "
              f"{'RSS +MiB':>9} {'decide pinned':>14} {'pinned, 100 hot':>16} {'decide hash':>12}")
        for r in results:
            print(f"{int(r['pins']):>10,} {r['load_s']:>8.3f} {r['snapshot_s']:>11.3f} {r['build_s']:>8.3f} "
                  f"{r['build_cpu_s']:>12.3f} {r['rss_growth_mib']:>9.1f} {r['decide_pinned_ns'] / 1000:>11.2f} us "
                  f"{r['decide_hot_ns'] / 1000:>13.2f} us "
                  f"{r['decide_unpinned_ns'] / 1000:>9.2f} us")
        print(f"build of {int(large['pins']):,} pins: median {large['build_s']:.3f} s "
              f"(runs {', '.join(f'{b:.3f}' for b in builds)}), budget {args.budget} s: "
              f"{'ok' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
