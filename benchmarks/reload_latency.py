"""Request latency while a 1,000,000-pin tenants table reloads, against a quiet baseline.

Self-contained: starts two loopback backends and `stamp-router serve` (header routing,
the pins in a tenants_file), drives a bounded load (wrk with a paced Lua script if wrk is
installed, else an asyncio client at a fixed rate), and measures in one run:

    quiet    the load alone
    reload   the same load while the tenants file is replaced again and again (atomic
             rename, 10 % of the pins moved each time); each reload is timed from the
             rename to the first /route answer showing the moved probe tenant

With `--via push`, each change is instead a `PUT /config` of a JSON document holding the
whole table inline (last, as a control plane would serve it), timed from the start of
the request; the push's own answer comes after its last-known-good write.

    python benchmarks/reload_latency.py [--pins 1000000] [--duration 12] [--rate 2000]
                                        [--client auto|wrk|asyncio] [--via file|push]
                                        [--gap S] [--json]

Prints a table (or one JSON object with --json). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
PROBE = "tenant-0000007"       # moves between the two stamps at every reload
TOKEN = "reload-latency-admin-token"

BACKEND = r"""
import asyncio, sys
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf.rsplit(b"\r\n\r\n", 1)[1]
            self.t.write(RESP * n)
async def main():
    loop = asyncio.get_running_loop()
    for port in sys.argv[1:]:
        await loop.create_server(P, "127.0.0.1", int(port), reuse_address=True)
    print("up", flush=True)
    await asyncio.Event().wait()
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
"""

# Paced wrk: each connection waits DELAY ms between requests, so the load is bounded
# (connections * 1000 / DELAY requests a second at most) instead of saturating.
WRK_LUA = r"""
local n, i, delay_ms = 0, 0, 0
function init(args)
  n = tonumber(args[1]); delay_ms = tonumber(args[2])
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  i = math.random(n)
end
function request()
  i = (i + 7919) % n
  return wrk.format("GET", "/", {["X-Tenant-ID"] = string.format("tenant-%07d", i)})
end
function delay() return delay_ms end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"failed":%d,"p50":%d,"p99":%d,"p999":%d,"max":%d}\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"reload_latency: timed out waiting for {what}")


def admin_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def admin_put(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("PUT", path, body, {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tables(pins: int) -> tuple[bytes, bytes]:
    """Two versions of the table; B moves every tenth tenant (the probe included)."""
    a = {f"tenant-{i:07d}": ("eu-1" if i % 2 else "eu-2") for i in range(pins)}
    b = dict(a)
    for i in range(7, pins, 10):
        b[f"tenant-{i:07d}"] = "eu-2" if a[f"tenant-{i:07d}"] == "eu-1" else "eu-1"
    return orjson.dumps(a), orjson.dumps(b)


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="reload-latency-"))
        self.procs: list[subprocess.Popen] = []
        self.port, self.admin = free_port(), free_port()
        self.backends = [free_port(), free_port()]
        self.router_split: list[dict] = []

    # -- set-up ----------------------------------------------------------------------
    def start(self) -> None:
        backend = subprocess.Popen([sys.executable, "-c", BACKEND, *map(str, self.backends)],
                                   stdout=subprocess.PIPE, text=True)
        self.procs.append(backend)
        assert backend.stdout.readline().strip() == "up"
        self.table_a, self.table_b = tables(self.args.pins)
        (self.dir / "tenants.json").write_bytes(self.table_a)
        (self.dir / "admin.token").write_text(TOKEN)
        (self.dir / "router.toml").write_text(f"""
tenants_file = "tenants.json"
[listen]
http = "127.0.0.1:{self.port}"
[admin]
listen = "127.0.0.1:{self.admin}"
token_file = "admin.token"
[control]
watch_interval = {self.args.watch_interval}
state_dir = "{self.dir / 'state'}"
[routing]
sources = ["header"]
unpinned = "reject"
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["127.0.0.1:{self.backends[0]}"]
health = {{ enabled = false }}
[[stamps]]
name = "eu-2"
region = "eu"
backends = ["127.0.0.1:{self.backends[1]}"]
health = {{ enabled = false }}
""")
        self.router = subprocess.Popen([sys.executable, "-m", "router", "serve", "-c", str(self.dir / "router.toml")],
                                       cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=open(self.dir / "router.stderr", "wb"))
        self.procs.append(self.router)
        wait_for(self._ready, 120, "the router to be ready")

    def _ready(self) -> bool:
        if self.router.poll() is not None:
            raise SystemExit(f"router exited: {(self.dir / 'router.stderr').read_text()[-2000:]}")
        return admin_get(self.admin, "/readyz")[0] == 200

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- load --------------------------------------------------------------------------
    def load(self, duration: float) -> dict:
        if self.client == "wrk":
            return self._wrk(duration)
        return asyncio.run(_asyncio_load(self.port, self.args.pins, duration, self.args.rate, self.args.connections))

    def _wrk(self, duration: float) -> dict:
        script = self.dir / "reload.lua"
        script.write_text(WRK_LUA)
        delay = max(0, round(self.args.connections * 1000 / self.args.rate))
        out = subprocess.run(["wrk", "-t1", f"-c{self.args.connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
                              "-s", str(script), f"http://127.0.0.1:{self.port}/", "--",
                              str(self.args.pins), str(delay)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for key in ("p50", "p99", "p999", "max"):
            result[key] /= 1000.0          # wrk reports microseconds
        return result

    # -- reloads -------------------------------------------------------------------------
    def reload_once(self, table: bytes, probe_stamp: str) -> float:
        if self.args.via == "push":
            # The routing part of router.toml, then the table last; JSON by Content-Type.
            doc = b'{"routing": {"sources": ["header"], "unpinned": "reject"}, "stamps": ' + orjson.dumps([
                {"name": f"eu-{i + 1}", "region": "eu", "backends": [f"127.0.0.1:{port}"], "health": {"enabled": False}}
                for i, port in enumerate(self.backends)]) + b', "tenants": ' + table + b"}"
            answer: list = []
            pusher = threading.Thread(target=lambda: answer.append(admin_put(self.admin, "/config", doc)))
            changed = time.monotonic()
            pusher.start()
        else:
            tmp = self.dir / "tenants.json.tmp"
            tmp.write_bytes(table)
            changed = time.monotonic()
            os.replace(tmp, self.dir / "tenants.json")
        wait_for(lambda: json.loads(admin_get(self.admin, f"/route?tenant={PROBE}")[1] or b"{}").get("stamp")
                 == probe_stamp, 60, "the reloaded table")
        served = time.monotonic() - changed
        if self.args.via == "push":
            pusher.join(120)
            if not answer or answer[0][0] != 200:
                raise SystemExit(f"reload_latency: PUT /config answered {answer[:1]}")
        # The router's own account of it (GET /config: last_reload): the rest of `served`
        # is noticing the change (up to watch_interval) and this harness seeing it served.
        last = json.loads(admin_get(self.admin, "/config")[1] or b"{}").get("last_reload") or {}
        self.router_split.append({"seconds": last.get("seconds"), **(last.get("phases") or {})})
        return served

    def reload_loop(self, until: float, results: list[float]) -> None:
        # PROBE is odd, so eu-1 in table A; it is one of the tenants B moves, to eu-2.
        versions = [(self.table_b, "eu-2"), (self.table_a, "eu-1")]
        n = 0
        while time.monotonic() < until:
            results.append(self.reload_once(*versions[n % 2]))
            n += 1
            # A gap lets the previous reload's background work (persisting the last known
            # good, freeing the old table) finish, as between real control-plane changes.
            # When the next gap would not fit, stop: one more reload right away would be a
            # back-to-back one counted in a run that says it has gaps.
            if self.args.gap:
                if time.monotonic() + self.args.gap >= until:
                    break
                time.sleep(self.args.gap)

    def run(self) -> dict:
        self.client = self.args.client
        if self.client == "auto":
            self.client = "wrk" if shutil.which("wrk") else "asyncio"
        self.start()
        rss_start = rss_mb(self.router.pid)
        self.load(2)                                              # warm-up
        quiet = self.load(self.args.duration)
        reloads: list[float] = []
        lead_in = 1.0
        loop = threading.Thread(target=lambda: (time.sleep(lead_in),
                                                self.reload_loop(time.monotonic() + self.args.duration - lead_in - 3,
                                                                 reloads)))
        loop.start()
        during = self.load(self.args.duration)
        loop.join()
        status, metrics = admin_get(self.admin, "/metrics")
        rejected = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.decode().splitlines()
                       if line.startswith("stamp_router_config_reloads_total") and 'result="rejected"' in line)
        return {
            "pins": self.args.pins, "client": self.client, "rate": self.args.rate,
            "connections": self.args.connections, "duration_s": self.args.duration,
            "quiet": quiet, "reload": during,
            "gap_s": self.args.gap, "via": self.args.via,
            "reloads": len(reloads), "served_within_s": [round(r, 3) for r in reloads],
            "router_reload_s": self.router_split[:len(reloads)],
            "rejected_reloads": rejected,
            "router_rss_mb": {"start": round(rss_start, 1), "end": round(rss_mb(self.router.pid), 1)},
        }


async def _asyncio_load(port: int, pins: int, duration: float, rate: float, connections: int) -> dict:
    """Fixed-rate keep-alive GETs; latency from the moment each request is sent."""
    latencies: list[float] = []
    failed = 0
    per_conn = rate / connections
    end = time.monotonic() + duration

    async def conn_loop(seed: int) -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i, k = seed, 0
        start = time.monotonic()
        while True:
            due = start + k / per_conn
            now = time.monotonic()
            if due > end:
                break
            if due > now:
                await asyncio.sleep(due - now)
            i = (i + 7919) % pins
            sent = time.monotonic()
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: tenant-%07d\r\n\r\n" % i)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    failed += 1
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                failed += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            latencies.append(time.monotonic() - sent)
            k += 1
        writer.close()

    await asyncio.gather(*(conn_loop(c * 104729) for c in range(connections)))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": len(latencies), "failed": failed, "p50": pct(50), "p99": pct(99), "p999": pct(99.9),
            "max": latencies[-1] * 1000 if latencies else 0.0}


def print_table(r: dict) -> None:
    via = "PUT /config" if r.get("via") == "push" else "the tenants file"
    spacing = f"{r['gap_s']:g} s apart" if r.get("gap_s") else "back to back"
    print(f"reload latency: {r['pins']:,} pins, {r['client']}, {r['connections']} connections "
          f"at up to {r['rate']:.0f} req/s, {r['duration_s']} s per phase; changes through {via}, {spacing}")
    print(f"{'phase':<8} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
    for phase in ("quiet", "reload"):
        x = r[phase]
        print(f"{phase:<8} {x['requests']:>9} {x['failed']:>7} {x['p50']:>8.2f} {x['p99']:>8.2f} "
              f"{x['p999']:>9.2f} {x['max']:>8.1f}")
    served = r["served_within_s"]
    if served:
        print(f"reloads during the reload phase: {r['reloads']}; change -> served: "
              + ", ".join(f"{s:.2f}" for s in served) + f" s (max {max(served):.2f} s)")
        split = [x for x in r.get("router_reload_s", []) if x.get("seconds") is not None]
        if split:
            print("  of which in the router (validate + plan + swap): "
                  + ", ".join(f"{x['seconds']:.2f} ({x.get('validate', 0):.2f} + {x.get('plan', 0):.2f} + "
                              f"{x.get('swap', 0):.2f})" for x in split) + " s; the rest is noticing the change "
                  f"(inotify, else the watch interval) and seeing it served")
    print(f"rejected reloads: {r['rejected_reloads']:.0f}; router RSS: {r['router_rss_mb']['start']} MB at start, "
          f"{r['router_rss_mb']['end']} MB at the end")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pins", type=int, default=1_000_000)
    ap.add_argument("--duration", type=float, default=12.0, help="seconds per phase")
    ap.add_argument("--rate", type=float, default=2000.0, help="requests per second at most")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto")
    ap.add_argument("--watch-interval", type=float, default=0.25, help="the router's control.watch_interval (default: the router's own default)")
    ap.add_argument("--gap", type=float, default=0.0,
                    help="seconds between reloads (0: back to back, the worst case)")
    ap.add_argument("--via", choices=("file", "push"), default="file",
                    help="how each change arrives: the tenants file replaced (default), or PUT /config "
                         "of a JSON document with the table inline")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (router.stderr)")
    args = ap.parse_args(argv)
    bench = Bench(args)
    try:
        result = bench.run()
    finally:
        bench.stop()
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
