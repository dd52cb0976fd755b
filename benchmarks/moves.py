"""What a tenant move costs: the pause its clients see, and other tenants' throughput.

Runs `stamp-router serve` (one worker) in front of two loopback stamps (benchmarks/sink.py),
with a migration hook served here that answers after a set delay. For each hook delay:

- the moving tenant's clients (`--clients` keep-alive connections, alternating POST and
  GET) run throughout; every request's start and latency is kept. A request that began
  while a move ran was held (or was in flight when the pause came): its latency is the
  pause its client saw (p50/p99 over every such request of every move);
- wrk sends other tenants' requests for `--duration` seconds, `--rounds` times without a
  move and as often while the tenant is moved back and forth, one move after another
  (POST /tenants/acme/move), alternating. Their req/s should be the same within noise.

    python benchmarks/moves.py [--hooks 0,0.1,1] [--duration 5] [--rounds 3] [--clients 8]

Prints a Markdown table and writes JSON to benchmarks/results/moves.json (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import wrk, write_requests  # noqa: E402
from procs import Procs, free_port, machine, require, wait_port  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOKEN = "bench-moves"


def config(tmp: Path, port: int, admin: int, old: int, new: int, hook: int) -> Path:
    (tmp / "token").write_text(TOKEN)
    path = tmp / "router.toml"
    path.write_text(f"""
[listen]
http = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
token_file = "token"
[process]
workers = 1
[routing]
sources = ["header"]
[migration]
hook_url = "http://127.0.0.1:{hook}/hook"
hold_timeout = "30s"
[control]
state_dir = "state"
[[stamps]]
name = "old"
region = "eu"
backends = ["127.0.0.1:{old}"]
health = {{ enabled = false }}
[[stamps]]
name = "new"
region = "eu"
backends = ["127.0.0.1:{new}"]
health = {{ enabled = false }}
[tenants]
acme = "old"
""")
    return path


class Hook:
    def __init__(self) -> None:
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(self.delay)
        return web.json_response({"ok": True})


async def tenant_clients(port: int, clients: int, stop: asyncio.Event, records: list) -> None:
    """The moving tenant's clients: (start, seconds, status) per request."""
    url = f"http://127.0.0.1:{port}/acme"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one() -> None:
            n = 0
            while not stop.is_set():
                method = "POST" if n % 2 == 0 else "GET"
                t = time.monotonic()
                try:
                    async with session.request(method, url, headers={"X-Tenant-ID": "acme"},
                                               data=b"x" * 64 if method == "POST" else None) as resp:
                        await resp.read()
                        records.append((t, time.monotonic() - t, resp.status))
                except aiohttp.ClientError as exc:
                    records.append((t, time.monotonic() - t, repr(exc)))
                n += 1
        await asyncio.gather(*(one() for _ in range(clients)))


def _rps(res: dict) -> float:
    return res["requests"] / (res["duration_us"] / 1e6)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args) -> dict:
    require("wrk", "apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-moves-"))
    procs = Procs(tmp)
    port, admin, old, new = free_port(), free_port(), free_port(), free_port()
    hook = Hook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = runner.addresses[0][1]
    cfg = config(tmp, port, admin, old, new, hook_port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results: dict = {"settings": vars(args), "machine": machine(), "hooks": []}
    try:
        procs.start("sink", [sys.executable, str(HERE / "sink.py"), str(old), str(new)])
        wait_port(old, 10)
        router = procs.start("router", [sys.executable, "-m", "router", "serve", "-c", str(cfg)], env=env, cwd=str(tmp))
        wait_port(port, 30, router, "router")
        others = write_requests(tmp / "others.txt", [[("X-Tenant-ID", f"other-{i}")] for i in range(1000)])
        async with aiohttp.ClientSession() as admin_session:
            where = {"stamp": "old"}

            async def move() -> tuple[float, float, dict]:
                target = "new" if where["stamp"] == "old" else "old"
                t0 = time.monotonic()
                async with admin_session.post(f"http://127.0.0.1:{admin}/tenants/acme/move",
                                              json={"to": target, "timeout": "60s"},
                                              headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    body = await resp.json()
                t1 = time.monotonic()
                if body.get("outcome") != "completed":
                    raise RuntimeError(f"move failed: {body}")
                where["stamp"] = target
                return t0, t1, body

            for delay in args.hooks:
                hook.delay = delay
                records: list = []
                stop = asyncio.Event()
                load = asyncio.get_running_loop().create_task(tenant_clients(port, args.clients, stop, records))
                await asyncio.sleep(0.5)
                windows = []
                baselines, during = [], []
                # Rounds alternate: a round without moves, then one with, so that the
                # machine's drift falls on both alike.
                for _ in range(args.rounds):
                    baselines.append(await asyncio.to_thread(wrk, port, others, duration=args.duration,
                                                             connections=32, threads=1, cpus=None))
                    box: dict = {}
                    done = threading.Event()

                    def measured() -> None:
                        box["r"] = wrk(port, others, duration=args.duration, connections=32, threads=1, cpus=None)
                        done.set()

                    thread = threading.Thread(target=measured)
                    thread.start()
                    while not done.is_set():
                        t0, t1, body = await move()
                        windows.append((t0, t1, body["seconds"]))
                        await asyncio.sleep(0.2)
                    thread.join()
                    during.append(box["r"])
                stop.set()
                await load
                held = [secs for (t, secs, status) in records if any(w0 <= t <= w1 for w0, w1, _ in windows)]
                failed = [r for r in records if r[2] != 200]
                entry = {
                    "hook_s": delay, "moves": len(windows),
                    "move_seconds_median": statistics.median(w[2] for w in windows),
                    "held_requests": len(held), "held_p50_ms": pct(held, 0.5) * 1000,
                    "held_p99_ms": pct(held, 0.99) * 1000, "held_max_ms": max(held, default=0) * 1000,
                    "tenant_requests": len(records), "tenant_failed": len(failed),
                    "others_rps_baseline": [_rps(r) for r in baselines],
                    "others_rps_during_moves": [_rps(r) for r in during],
                    "others_errors": sum(sum(r["errors"].values()) for r in baselines + during),
                }
                results["hooks"].append(entry)
                print(json.dumps(entry), file=sys.stderr, flush=True)
    finally:
        procs.close()
        await runner.cleanup()
    return results


def table(results: dict) -> str:
    lines = ["| hook | moves | move (median) | requests begun during a move | their p50 | p99 | max | failed | "
             "other tenants req/s, median (range): no move | during moves |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in results["hooks"]:
        lines.append(f"| {e['hook_s'] * 1000:.0f} ms | {e['moves']} | {e['move_seconds_median'] * 1000:.0f} ms | "
                     f"{e['held_requests']} | {e['held_p50_ms']:.0f} ms | {e['held_p99_ms']:.0f} ms | "
                     f"{e['held_max_ms']:.0f} ms | {e['tenant_failed']} | {_spread(e['others_rps_baseline'])} | "
                     f"{_spread(e['others_rps_during_moves'])} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hooks", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.1, 1.0],
                    help="hook delays in seconds, comma-separated")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of wrk load per measurement")
    ap.add_argument("--clients", type=int, default=8, help="the moving tenant's keep-alive connections")
    ap.add_argument("--rounds", type=int, default=3, help="rounds without and with moves, alternating")
    ap.add_argument("--out", default=str(HERE / "results" / "moves.json"))
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0 if all(e["tenant_failed"] == 0 for e in results["hooks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
