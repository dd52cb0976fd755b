"""One measured round: wrk against one system, with that system's CPU time read around it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from procs import cpu_times, peak_rss_mib, pinned, rss_mib

LUA = Path(__file__).resolve().parent / "wrk_bench.lua"


def write_requests(path: Path, header_sets: list[list[tuple[str, str]]]) -> Path:
    with open(path, "w") as f:
        for headers in header_sets:
            f.write("\t".join(f"{name}: {value}" for name, value in headers) + "\n")
    return path


def url(port: int, tls: bool) -> str:
    # Over TLS the name is the certificate's (tls_material.py): wrk sends it as SNI and in
    # Host, which the router requires to be the same (421 otherwise).
    return f"https://localhost:{port}/" if tls else f"http://127.0.0.1:{port}/"


def wrk(port: int, requests_file: Path, *, duration: float, connections: int, threads: int,
        cpus: str | None, timeout_s: float = 10.0, tls: bool = False) -> dict:
    cmd = pinned(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
                  "--latency", "--timeout", f"{timeout_s:g}s", "-s", str(LUA),
                  url(port, tls), "--", str(requests_file)], cpus)
    # wrk ends by itself after -d; the subprocess timeout only guards against a hang.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk gave no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")


def measure(pids: int | list[int], port: int, requests_file: Path, *, duration: float, connections: int,
            threads: int, cpus: str | None, tls: bool = False) -> dict:
    """Run wrk once; report throughput, latency and the proxy's CPU per request.

    `pids`: every process of the proxy (the router's supervisor and workers): their CPU
    time is summed, and each one's share of it kept (`cpu_share`: how evenly workers work)."""
    pids = [pids] if isinstance(pids, int) else list(pids)
    before = {pid: cpu_times(pid) for pid in pids}
    t0 = time.monotonic()
    res = wrk(port, requests_file, duration=duration, connections=connections, threads=threads, cpus=cpus, tls=tls)
    wall = time.monotonic() - t0
    spent = {}
    for pid in pids:
        try:
            u, s = cpu_times(pid)
        except OSError:               # gone meanwhile (a worker killed on purpose)
            u, s = before[pid]
        spent[pid] = (u - before[pid][0], s - before[pid][1])
    user = sum(u for u, _ in spent.values())
    system = sum(s for _, s in spent.values())
    cpu = user + system
    pid = pids[0]
    n = res["requests"]
    secs = res["duration_us"] / 1e6
    errors = sum(res["errors"].values())
    return {
        "rps": n / secs if secs else 0.0,
        "requests": n,
        "errors": errors,
        "error_detail": res["errors"],
        "p50_ms": res["latency_us"]["p50"] / 1000,
        "p75_ms": res["latency_us"]["p75"] / 1000,
        "p90_ms": res["latency_us"]["p90"] / 1000,
        "p99_ms": res["latency_us"]["p99"] / 1000,
        "p999_ms": res["latency_us"]["p99.9"] / 1000,
        "max_ms": res["latency_us"]["max"] / 1000,
        # CPU is read around the whole wrk process (start-up and teardown included, a few
        # ms against seconds of load); clock ticks are 10 ms, so rounds last seconds.
        "cpu_us_per_req": cpu / n * 1e6 if n else None,
        # User time is the proxy's own code (for the router: Python); system time is the
        # kernel's socket work, which every proxy pays for the same reads and writes.
        "user_us_per_req": user / n * 1e6 if n else None,
        "sys_us_per_req": system / n * 1e6 if n else None,
        "cpu_util": cpu / wall if wall else None,
        "rss_mib": rss_mib(pid),
        "peak_rss_mib": peak_rss_mib(pid),
        "cpu_share": [round((u + s) / cpu, 3) if cpu else None for u, s in spent.values()],
    }
