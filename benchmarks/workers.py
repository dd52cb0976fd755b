"""The `workers` scenario: the router as one supervisor and its worker processes.

- scaling: header routing, requests/s and CPU per request (summed over every process of
  the proxy) for the router with 1 and 2 workers and HAProxy with `nbthread 1` and `2`,
  in the same rounds. Nothing is pinned here: two workers need both cores, so wrk and
  the backend share them with the proxy (benchmarks/README.md says what that means).
- balance: how the work spreads over 2 workers that accept on one shared socket, with
  keep-alive connections (wrk -c64) and with a new connection per request.
- memory: PSS (smaps_rollup) of the whole router with a million pins, 1 and 2 workers,
  against the single process the router was before workers (its code checked out from
  git), idle and after load on 10,000 of the pinned tenants.
- failures: wrk's errors and non-2xx answers while a worker is killed with SIGKILL, and
  while `serve --takeover` replaces the running router; and how long the killed worker
  took to be replaced.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from loadgen import measure, wrk, write_requests
from procs import free_port, pinned, pss_mib, wait_port
from systems import ROOT, HaproxySystem, RouterSystem, Routing, worker_pids, stamp_of, tenant_id

sys.path.insert(0, str(ROOT))
from tests.process.support import worker_of_connections  # noqa: E402 - the tests' reading of /proc, reused

# The router as it was before it had workers (one process): the baseline of the memory
# figure. The parent of the commit that added the supervisor.
SINGLE_PROCESS_REV = "c3b4267^"


def _unpinned(bench):
    """The bench with the proxy and the load free to use every core."""
    view = copy.copy(bench)
    view.proxy_cpus = view.load_cpus = ",".join(map(str, bench.all_cpus))
    return view


def scenario_workers(bench) -> dict:
    from scenarios import Entry, run_entries    # noqa: PLC0415 - scenarios imports this module
    b = _unpinned(bench)
    table = bench.table(100)
    rows = [[("X-Tenant-ID", tenant_id(i))] for i in range(100)]
    requests = write_requests(bench.tmp / "req-workers.txt", rows)
    routing = Routing("header", table, bench.backend.addresses)
    probe = [("X-Tenant-ID", tenant_id(7))]
    entries = []
    for n in (1, 2):
        entries.append(Entry(f"router {n} worker{'s' if n > 1 else ''}", RouterSystem(bench.tmp, workers=n), routing,
                             requests, probe, stamp_of(7), tenant_id(7), f"workers-{n}"))
    if "haproxy" in bench.args.systems and HaproxySystem(bench.tmp).available() is None:
        for n in (1, 2):
            entries.append(Entry(f"haproxy nbthread {n}", HaproxySystem(bench.tmp, nbthread=n), routing, requests,
                                 probe, stamp_of(7), tenant_id(7), f"workers-{n}t"))
    res = run_entries(b, entries, stop_after=False)
    out: dict = {"description": "header routing, 100 pins; router with 1 and 2 workers, HAProxy with nbthread 1 and "
                                "2; proxy, wrk and backend unpinned on every core; CPU summed over the proxy's "
                                "processes (router: supervisor + workers)",
                 "cpus": len(bench.all_cpus), "results": res, "scaling": {}}
    for name, one, two in (("router", "router 1 worker", "router 2 workers"),
                           ("haproxy", "haproxy nbthread 1", "haproxy nbthread 2")):
        if one in res and two in res:
            m1, m2 = res[one]["median"], res[two]["median"]
            out["scaling"][name] = {"rps_2_over_1": round(m2["rps"] / m1["rps"], 3),
                                    "cpu_per_req_2_over_1": round(m2["cpu_us_per_req"] / m1["cpu_us_per_req"], 3)}
    two = next((e for e in entries if e.label == "router 2 workers"), None)
    try:
        if two is not None:
            out["balance"] = _balance(b, two, rows)
    finally:
        for e in entries:
            if e.running is not None:
                bench.procs.stop(e.running.proc)
    out["memory"] = _memory(bench)
    out["failures"] = _failures(b, routing, requests, probe)
    out["health"] = _health(bench)
    return out


def _health(bench) -> dict:
    """benchmarks/health_fanout.py: how soon a health transition reaches both workers."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "health_fanout.py"), "--transitions", "5", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            got = json.loads(line)
            down = [x for r in got["results"] if r["transition"] == "down" for x in r["worker_lag_ms"]]
            up = [x for r in got["results"] if r["transition"] == "up" for x in r["worker_lag_ms"] if x is not None]
            got["max_down_lag_ms"] = max(down) if down else None
            got["max_up_lag_ms"] = max(up) if up else None
            bench.log(f"  health transitions: a backend down reached both workers {got['max_down_lag_ms']} ms after "
                      f"the supervisor showed it at the latest; back up, first used {got['max_up_lag_ms']} ms after")
            return {"command": "python benchmarks/health_fanout.py --transitions 5", **got}
    return {"failed": f"health_fanout.py gave no JSON (exit {done.returncode}): {done.stderr[-500:]}"}


# -- balance -------------------------------------------------------------------------------

def connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """How many client connections to `port` each process holds."""
    counts = {pid: 0 for pid in pids}
    for client_port, pid in worker_of_connections(port, pids).items():
        if client_port:                  # 0: the listening socket itself, which every worker holds
            counts[pid] += 1
    return counts


def _balance(b, entry, rows) -> dict:
    """Work per worker: keep-alive connections (which worker accepted each of wrk's
    connections, sampled mid-run) and a new connection per request (CPU shares)."""
    running = entry.running
    workers = running.pids[1:]
    args = b.args
    out = {}
    sample: dict = {}

    def sample_later():
        time.sleep(args.duration / 2)
        sample.update(connections_by_pid(running.port, workers))

    t = threading.Thread(target=sample_later)
    t.start()
    res = measure(running.pids, running.port, entry.requests, duration=args.duration, connections=args.connections,
                  threads=args.threads, cpus=b.load_cpus)
    t.join()
    out["keep_alive"] = {"connections_per_worker": list(sample.values()), "cpu_share": res["cpu_share"],
                         "rps": round(res["rps"])}
    churn = write_requests(b.tmp / "req-workers-close.txt", [r + [("Connection", "close")] for r in rows])
    res = measure(running.pids, running.port, churn, duration=args.duration, connections=args.connections,
                  threads=args.threads, cpus=b.load_cpus)
    out["connection_per_request"] = {"cpu_share": res["cpu_share"], "rps": round(res["rps"]),
                                     "errors": res["errors"], "error_detail": res["error_detail"]}
    b.log(f"  balance over 2 workers (supervisor first): keep-alive connections {out['keep_alive']['connections_per_worker']}, "
          f"CPU shares {res['cpu_share']} with a connection per request ({res['rps']:.0f} req/s)")
    return out


# -- memory --------------------------------------------------------------------------------

def _single_process_code(bench) -> Path | None:
    dest = bench.tmp / "single-process"
    if not dest.exists():
        dest.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", SINGLE_PROCESS_REV, "router"],
                                 capture_output=True)
        if archive.returncode != 0:
            return None
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _tree_pss(pids: list[int]) -> float:
    return round(sum(pss_mib(p) for p in pids), 1)


def _memory(bench) -> dict:
    count = bench.args.pins
    table = bench.table(count)
    stride = max(1, count // 10_000)
    ids = list(range(1, count, stride))[:10_000]
    requests = write_requests(bench.tmp / "req-workers-big.txt", [[("X-Tenant-ID", tenant_id(i))] for i in ids])
    routing = Routing("header", table, bench.backend.addresses)
    cpus = ",".join(map(str, bench.all_cpus))
    systems = [("2 workers", RouterSystem(bench.tmp, workers=2)), ("1 worker", RouterSystem(bench.tmp, workers=1))]
    code = _single_process_code(bench)
    if code is not None:
        systems.insert(0, ("single process", RouterSystem(bench.tmp, workers=None, code=code)))
    out: dict = {"pins": count, "single_process_code": f"git {SINGLE_PROCESS_REV}" if code else None, "results": {}}
    for label, system in systems:
        tag = "mem-" + label.replace(" ", "-")
        running = system.start(bench.procs, routing, free_port(), cpus, tag)
        try:
            idle = _tree_pss(running.pids)
            wrk(running.port, requests, duration=3, connections=bench.args.connections, threads=bench.args.threads,
                cpus=cpus)
            loaded = _tree_pss(running.pids)
            out["results"][label] = {"processes": len(running.pids), "pss_mib_idle": idle, "pss_mib_loaded": loaded,
                                     "pss_mib_per_process": [round(pss_mib(p), 1) for p in running.pids],
                                     "startup_s": round(running.started_s, 1)}
            bench.log(f"  {label:<15} {len(running.pids)} process(es): PSS {idle:.0f} MiB idle, {loaded:.0f} MiB "
                      f"after load; ready in {running.started_s:.1f} s")
        finally:
            bench.procs.stop(running.proc)
    base = out["results"].get("single process")
    if base:
        for label in ("1 worker", "2 workers"):
            if label in out["results"]:
                r = out["results"][label]
                r["vs_single_process"] = round(r["pss_mib_loaded"] / base["pss_mib_loaded"], 2)
    return out


# -- failures ------------------------------------------------------------------------------

class Background:
    """wrk in a thread: its JSON once it ends."""

    def __init__(self, port: int, requests: Path, duration: float, b) -> None:
        self.result: dict = {}
        self.thread = threading.Thread(target=lambda: self.result.update(wrk(
            port, requests, duration=duration, connections=32, threads=b.args.threads, cpus=b.load_cpus)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join()


def _wrk_failures(res: dict) -> dict:
    e = res.get("errors", {})
    return {"requests": res.get("requests"), "failed": sum(e.values()), "errors": e}


def _failures(b, routing: Routing, requests: Path, probe) -> dict:
    out = {}
    system = RouterSystem(b.tmp, workers=2)
    running = system.start(b.procs, routing, free_port(), b.proxy_cpus, "fail-kill")
    admin = running.extra["admin_port"]
    try:
        with Background(running.port, requests, 8.0, b) as load:
            time.sleep(3.0)
            workers = worker_pids(admin)
            victim = workers[0]
            held = connections_by_pid(running.port, workers)
            os.kill(victim, 9)
            killed = time.monotonic()
            replaced = None
            while time.monotonic() - killed < 30:
                now = worker_pids(admin)
                if len(now) == 2 and victim not in now:
                    replaced = time.monotonic() - killed
                    break
                time.sleep(0.01)
        # What may fail is what the killed worker had in flight: its connections' requests.
        out["kill_9"] = {**_wrk_failures(load.result), "replaced_within_s": round(replaced, 3) if replaced else None,
                         "victim_connections": held[victim], "other_connections": sum(held.values()) - held[victim]}
        b.log(f"  kill -9 of a worker under wrk -c32: {out['kill_9']['failed']} failed of "
              f"{out['kill_9']['requests']} ({out['kill_9']['errors']}; the killed worker held {held[victim]} of "
              f"the {sum(held.values())} connections); replaced in {replaced:.3f} s"
              if replaced else "  kill -9: the worker was not replaced within 30 s")
    finally:
        b.procs.stop(running.proc)

    running = system.start(b.procs, routing, free_port(), b.proxy_cpus, "fail-takeover")
    try:
        with Background(running.port, requests, 10.0, b) as load:
            time.sleep(3.0)
            cmd = [str(ROOT / ".venv" / "bin" / "stamp-router"), "serve", "-c", running.extra["config"], "--takeover"]
            successor = b.procs.start("router-takeover", pinned(cmd, b.proxy_cpus), cwd=str(ROOT),
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
            started = time.monotonic()
            try:
                running.proc.wait(60)
                handed = time.monotonic() - started
            except subprocess.TimeoutExpired:
                handed = None
        out["takeover"] = {**_wrk_failures(load.result), "old_router_exit": running.proc.returncode,
                           "old_gone_after_s": round(handed, 2) if handed else None,
                           "successor_running": successor.poll() is None}
        b.log(f"  takeover under wrk -c32: {out['takeover']['failed']} failed of {out['takeover']['requests']} "
              f"({out['takeover']['errors']}); the old router gone {handed or float('nan'):.1f} s after the new one started")
        b.procs.stop(successor)
    finally:
        b.procs.stop(running.proc)
    return out
