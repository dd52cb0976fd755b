"""etcd as the config source: pin propagation to a fleet, and a million-pin start.

Self-contained: starts an etcd (Debian's etcd-server) and loopback backends, then

    propagation  3 routers follow one etcd; `--rounds` times, one pin is flipped between
                 two stamps with one etcd put, and each router's data path is polled (a
                 proxied request on a keep-alive connection, reading X-Stamp) until it
                 serves the new stamp. Latency: from just before the put to the first
                 proxied answer showing it, per router; p50/p99/max over every router
                 and round.
    load         `--pins` pins: `stamp-router etcd import` of a config with a tenants_file
                 (time, transactions); then a router started on etcd and one started on
                 the same config as a file: time from spawn to /readyz 200, and the RSS
                 of the supervisor and its worker once ready; then the etcd router
                 started again with its last known good: time to /readyz 200 (serving
                 the LKG) and to serving etcd's content, read in the background.

    python benchmarks/etcd_fleet.py [--rounds 200] [--pins 1000000] [--skip-load] [--json]

Nothing leaves 127.0.0.1. Routers run with one worker each (2 cores here, 3 routers).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reload_latency import BACKEND, admin_get, free_port, rss_mb, wait_for  # noqa: E402
from tests.support.etcd import EtcdServer  # noqa: E402

PREFIX = "/bench"
PROBE = "probe-tenant"


def router_toml(directory: Path, *, port: int, admin: int, backends: list[int], etcd_url: str | None,
                tenants_file: str | None = None) -> Path:
    source = f'etcd = {{ endpoints = ["{etcd_url}"], prefix = "{PREFIX}" }}' if etcd_url else ""
    path = directory / "router.toml"
    path.write_text((f'tenants_file = "{tenants_file}"\n' if tenants_file else "") + f"""
[listen]
http = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[process]
workers = 1
[control]
state_dir = "{directory / 'state'}"
{source}
""" + ("" if etcd_url else routing(backends)))
    return path


def routing(backends: list[int]) -> str:
    return "".join(f"""
[[stamps]]
name = "eu-{i + 1}"
region = "eu"
backends = ["127.0.0.1:{port}"]
health = {{ enabled = false }}
""" for i, port in enumerate(backends)) + '\n[routing]\nsources = ["header"]\nunpinned = "reject"\n'


class Router:
    def __init__(self, directory: Path, config: Path, port: int, admin: int) -> None:
        self.dir, self.port, self.admin = directory, port, admin
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "router", "serve", "-c", str(config)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=open(directory / "router.stderr", "wb"))

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"router exited: {(self.dir / 'router.stderr').read_text()[-2000:]}")
        return admin_get(self.admin, "/readyz")[0] == 200

    def wait_ready(self, timeout: float = 600) -> float:
        wait_for(self.ready, timeout, "a router to be ready")
        return time.monotonic() - self.started

    def rss(self) -> dict[str, float]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return {"supervisor_mb": round(rss_mb(self.proc.pid), 1),
                "workers_mb": round(sum(rss_mb(int(c)) for c in children), 1)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Watcher(threading.Thread):
    """Polls one router's data path for the probe tenant; notes when the expected stamp shows."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.expect: str | None = None
        self.seen_at: float | None = None
        self.stop_flag = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_flag.is_set():
            try:
                conn.request("GET", "/", headers={"X-Tenant-ID": PROBE})
                resp = conn.getresponse()
                resp.read()
                stamp = resp.getheader("X-Stamp")
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            if self.seen_at is None and self.expect is not None and stamp == self.expect:
                self.seen_at = time.perf_counter()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def propagation(etcd: EtcdServer, work: Path, backends: list[int], rounds: int) -> dict:
    etcd.put(f"{PREFIX}/config", json.dumps(_config_doc(backends)))
    etcd.put(f"{PREFIX}/tenants/{PROBE}", '"eu-1"')
    routers = []
    for i in range(3):
        d = work / f"fleet-{i}"
        d.mkdir()
        port, admin = free_port(), free_port()
        routers.append(Router(d, router_toml(d, port=port, admin=admin, backends=backends, etcd_url=etcd.url),
                              port, admin))
    try:
        for r in routers:
            r.wait_ready(60)
        watchers = [Watcher(r.port) for r in routers]
        for w in watchers:
            w.start()
        latencies: list[float] = []
        misses = 0
        stamp = "eu-1"
        for _ in range(rounds):
            stamp = "eu-2" if stamp == "eu-1" else "eu-1"
            for w in watchers:
                w.seen_at, w.expect = None, stamp
            start = time.perf_counter()
            etcd.put(f"{PREFIX}/tenants/{PROBE}", json.dumps(stamp))
            deadline = time.monotonic() + 5
            while any(w.seen_at is None for w in watchers) and time.monotonic() < deadline:
                time.sleep(0.0005)
            for w in watchers:
                if w.seen_at is None:
                    misses += 1
                else:
                    latencies.append((w.seen_at - start) * 1000)
            time.sleep(0.03)
        for w in watchers:
            w.stop_flag.set()
        return {"rounds": rounds, "routers": 3, "samples": len(latencies), "missed": misses,
                "p50_ms": round(statistics.median(latencies), 2), "p99_ms": round(pct(latencies, 99), 2),
                "max_ms": round(max(latencies), 2)}
    finally:
        for r in routers:
            r.stop()


def _config_doc(backends: list[int]) -> dict:
    return {"version": "bench-1", "routing": {"sources": ["header"], "unpinned": "reject"},
            "stamps": [{"name": f"eu-{i + 1}", "region": "eu", "backends": [f"127.0.0.1:{p}"],
                        "health": {"enabled": False}} for i, p in enumerate(backends)]}


def initial_load(etcd: EtcdServer, work: Path, backends: list[int], pins: int) -> dict:
    d = work / "load"
    d.mkdir()
    table = {f"tenant-{i:07d}": ("eu-1" if i % 2 else "eu-2") for i in range(pins)}
    (d / "tenants.json").write_bytes(orjson.dumps(table))
    del table
    file_config = router_toml(d, port=free_port(), admin=free_port(), backends=backends, etcd_url=None,
                              tenants_file="tenants.json")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "router", "etcd", "import", str(file_config),
                           "--endpoints", etcd.url, "--prefix", PREFIX], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr[-2000:]}")
    out: dict = {"pins": pins, "import": {**json.loads(done.stdout.splitlines()[-1]),
                                          "wall_s": round(time.monotonic() - started, 2)}}
    for kind in ("etcd", "file"):
        rd = d / kind
        rd.mkdir()
        port, admin = free_port(), free_port()
        if kind == "file":
            (rd / "tenants.json").symlink_to(d / "tenants.json")
        config = router_toml(rd, port=port, admin=admin, backends=backends, etcd_url=etcd.url if kind == "etcd" else None,
                             tenants_file=None if kind == "etcd" else "tenants.json")
        router = Router(rd, config, port, admin)
        try:
            seconds = router.wait_ready()
            info = json.loads(admin_get(admin, "/config")[1])
            assert info["pins"] == pins, info
            out[f"start_from_{kind}"] = {"ready_s": round(seconds, 2), **router.rss()}
        finally:
            router.stop()
        if kind == "etcd":
            out["restart_from_etcd_with_lkg"] = restart_with_lkg(rd, config, port, admin, pins)
    return out


def restart_with_lkg(directory: Path, config: Path, port: int, admin: int, pins: int) -> dict:
    """The same router started again, its last known good in its state directory: ready
    (serving the LKG) and, later, serving etcd's content read in the background."""
    router = Router(directory, config, port, admin)
    try:
        ready = router.wait_ready()
        info = json.loads(admin_get(admin, "/config")[1])
        assert info["pins"] == pins and info["lkg"] is True, info

        def synced() -> bool:
            now = json.loads(admin_get(admin, "/config")[1])
            return now["lkg"] is False and now["etcd"]["state"] == "synced"
        wait_for(synced, 600, "etcd's content served after the restart")
        return {"ready_s": round(ready, 2), "etcd_served_s": round(time.monotonic() - router.started, 2), **router.rss()}
    finally:
        router.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--pins", type=int, default=1_000_000)
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="etcd-fleet-"))
    backend = subprocess.Popen([sys.executable, "-c", BACKEND, *map(str, ports := [free_port(), free_port()])],
                               stdout=subprocess.PIPE, text=True)
    assert backend.stdout.readline().strip() == "up"
    etcd = EtcdServer(work / "etcd").start()
    try:
        result = {"propagation": propagation(etcd, work, ports, args.rounds)}
        if not args.skip_load:
            etcd.delete(f"{PREFIX}/tenants/{PROBE}")
            result["load"] = initial_load(etcd, work, ports, args.pins)
            result["etcd_rss_mb"] = round(rss_mb(etcd.proc.pid), 1)
    finally:
        etcd.kill()
        backend.send_signal(signal.SIGTERM)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
