"""How far placement shares stray from weight shares, over many random stamp sets.

The numbers quoted in docs/placement.md ("Shares") come from this script:

    .venv/bin/python benchmarks/placement_shares.py [--configs 300] [--tenants 100000] [--seed 1]

For each random set of 2 to 6 stamps with integer weights 50 to 200 it builds the table,
places `--tenants` tenants ("tenant-0", "tenant-1", ...) and compares each stamp's
observed share with its weight share: the relative error, and the error in standard
deviations of the model sigma^2 = p (1 - p) (1 / TABLE_SIZE + 1 / N). A z variance near
1 says the model (independent slots, uniform tenant hashes) describes the table.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from collections import Counter

from router.core.hashing import key_hash
from router.core.placement import TABLE_SIZE, build_placement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=300)
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    n = args.tenants
    slots = Counter(key_hash(f"tenant-{i}") % TABLE_SIZE for i in range(n))
    rng = random.Random(args.seed)
    rows = []                                    # (weight share, relative error, z)
    for _ in range(args.configs):
        members = {f"s{rng.randrange(10**6)}-{k}": rng.randint(50, 200) for k in range(rng.randint(2, 6))}
        placement = build_placement(tuple(members.items()))
        counts = Counter()
        for slot, c in slots.items():
            counts[placement.names[placement.table[slot]]] += c
        total = sum(members.values())
        for name, weight in members.items():
            p, observed = weight / total, counts[name] / n
            sigma = math.sqrt(p * (1 - p) * (1 / TABLE_SIZE + 1 / n))
            rows.append((p, abs(observed / p - 1), (observed - p) / sigma))

    zs = [z for _, _, z in rows]
    rel = [r for _, r, _ in rows]
    worst = max(rows, key=lambda row: row[1])
    summary = {
        "configs": args.configs, "stamps": len(rows), "tenants": n, "table_size": TABLE_SIZE,
        "z_mean": statistics.fmean(zs), "z_variance": statistics.fmean(z * z for z in zs),
        "max_abs_z": max(map(abs, zs)),
        "max_relative_error": worst[1], "at_weight_share": worst[0],
        "share_over_5pct": sum(r > 0.05 for r in rel) / len(rel),
        "share_over_5pct_when_p_ge_0.37": (sum(r > 0.05 for p, r, _ in rows if p >= 0.37)
                                           / max(1, sum(p >= 0.37 for p, _, _ in rows))),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['configs']} stamp sets, {summary['stamps']} stamps, {n:,} tenants, table {TABLE_SIZE}")
    print(f"z: mean {summary['z_mean']:+.3f}, variance {summary['z_variance']:.3f}, max |z| {summary['max_abs_z']:.2f}")
    print(f"relative error: max {summary['max_relative_error']:.1%} (weight share {summary['at_weight_share']:.3f}); "
          f"over 5 %: {summary['share_over_5pct']:.1%} of stamps, "
          f"{summary['share_over_5pct_when_p_ge_0.37']:.1%} of those with share >= 0.37")


if __name__ == "__main__":
    main()
