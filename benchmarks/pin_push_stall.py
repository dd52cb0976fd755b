"""How long a pin push (PUT /tenants/{id}) holds the event loop on a large pin table.

In-process: builds a config with a tenants_file of N pins, then applies pin pushes in a
worker thread the way the reloader does (router.control.pins.apply_op) while a 1 ms
ticker on the event loop records how late it wakes. `--copy` makes every push copy the
whole table, as pushes did before router.core.pin_table, for comparison.

    python benchmarks/pin_push_stall.py [--pins 1000000] [--pushes 20] [--copy]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.config import load_bytes  # noqa: E402
from router.control.bulk import busy_worker, drain  # noqa: E402
from router.control.pins import apply_op, pin_op  # noqa: E402
from router.core import pin_table  # noqa: E402

CONFIG = b"""
tenants_file = "tenants.json"
[routing]
sources = ["header"]
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["127.0.0.1:1"]
[[stamps]]
name = "eu-2"
region = "eu"
backends = ["127.0.0.1:2"]
"""


async def measure(valid, pushes: int) -> tuple[list[float], list[float]]:
    lags: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t - 0.001)

    task = asyncio.create_task(ticker())
    worst, took = [], []
    for i in range(pushes):
        lags.clear()
        began = time.perf_counter()
        with busy_worker():
            old, valid = valid, await asyncio.to_thread(apply_op, valid, pin_op(f"pushed-{i}", "eu-2"),
                                                        base_version="v", edits=i + 1)
        took.append(time.perf_counter() - began)
        if type(old.pins) is dict and getattr(valid.pins, "base", None) is not old.pins:
            # A replaced copy is emptied in a worker thread, as the router's reaper does,
            # so that freeing it is not counted against the push.
            with busy_worker():
                await asyncio.to_thread(drain, old.pins)
        del old
        await asyncio.sleep(0.01)
        worst.append(max(lags, default=0.0))
    stop = True
    await task
    return took, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pins", type=int, default=1_000_000)
    ap.add_argument("--pushes", type=int, default=20)
    ap.add_argument("--copy", action="store_true", help="copy the whole table per push (the old way)")
    args = ap.parse_args()
    if args.copy:
        pin_table.LAYER_MIN = sys.maxsize
    with tempfile.TemporaryDirectory() as tmp:
        table = {f"tenant-{i:07d}": "eu-1" if i % 2 else "eu-2" for i in range(args.pins)}
        (Path(tmp) / "tenants.json").write_bytes(orjson.dumps(table))
        del table
        valid = load_bytes(CONFIG, fmt="toml", source=f"{tmp}/router.toml", base_dir=tmp)
    took, worst = asyncio.run(measure(valid, args.pushes))
    took.sort()
    worst.sort()
    mode = "copying the table" if args.copy else "pushed pins on top of the table"
    print(f"{args.pushes} pin pushes on {args.pins:,} pins, {mode}:")
    print(f"  push in a worker thread: median {took[len(took) // 2] * 1e3:.1f} ms, max {took[-1] * 1e3:.1f} ms")
    print(f"  event loop woken late by: median {worst[len(worst) // 2] * 1e3:.1f} ms, "
          f"max {worst[-1] * 1e3:.1f} ms (1 ms ticker)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
