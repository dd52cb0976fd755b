"""The scenarios of issue 8. Each returns a JSON-able dict; run.py collects and reports them.

A load scenario starts every system it compares (idle ones cost nothing), checks each
answers one request correctly, warms each up, then runs its rounds alternating the
systems, rotating the order every round so that none always goes first or last while
the machine's background load drifts. Figures are medians over rounds.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bodies
import jwt_material
import spy
from loadgen import measure, wrk, write_requests
from procs import Procs, cpu_seconds, cpu_times, free_port, peak_rss_mib, pinned, rss_mib, wait_port
from systems import (DOMAIN, STAMPS, SYSTEMS, Backend, RouterSystem, Routing, Running, System, stamp_of,
                     tenant_id, write_table)

HERE = Path(__file__).resolve().parent
GIB = 1024 ** 3
METRICS = ("rps", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "cpu_util",
           "errors")


@dataclass
class Entry:
    label: str
    system: System
    routing: Routing
    requests: Path
    probe: list[tuple[str, str]]
    expect_stamp: str
    expect_tenant: str
    tag: str
    running: Running | None = None


class Bench:
    """What every scenario shares: options, temp dir, children, the pinning, the backend."""

    def __init__(self, args, tmp: Path, procs: Procs, proxy_cpus: str | None, load_cpus: str | None,
                 log=print, all_cpus: list[int] | None = None) -> None:
        self.args = args
        self.all_cpus = all_cpus or sorted(os.sched_getaffinity(0))
        self.tmp = tmp
        self.procs = procs
        self.proxy_cpus = proxy_cpus
        self.load_cpus = load_cpus
        self.log = log
        self._backend: Backend | None = None
        self._tables: dict[int, object] = {}
        self._tls = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = Backend(self.tmp, {s: free_port() for s in STAMPS})
            self._backend.start(self.procs, self.load_cpus)
        return self._backend

    @property
    def tls_material(self):
        if self._tls is None:
            import tls_material
            self._tls = tls_material.material(self.tmp / "tls")
        return self._tls

    def table(self, count: int):
        if count not in self._tables:
            t0 = time.monotonic()
            self._tables[count] = write_table(self.tmp / "tables", count)
            if count >= 100_000:
                self.log(f"  wrote a {count:,}-pin table in three formats in {time.monotonic() - t0:.1f} s")
        return self._tables[count]

    def systems(self, names=("router", "haproxy", "nginx")) -> dict[str, System]:
        out = {}
        for cls in SYSTEMS.values():
            if cls.name in self.args.systems and cls.name in names:
                sysobj = cls(self.tmp)
                why = sysobj.available()
                if why:
                    self.log(f"  {cls.name}: skipped ({why})")
                    continue
                out[cls.name] = sysobj
        return out


# -- the load loop ---------------------------------------------------------------------------

def probe(entry: Entry) -> None:
    """One request, checked: right status, right stamp, tenant header set upstream."""
    tls = entry.routing.tls
    if tls is not None:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file))
        conn = http.client.HTTPSConnection(tls.server_name, entry.running.port, timeout=10, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", entry.running.port, timeout=10)
    try:
        conn.request("GET", "/", headers=dict(entry.probe))
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    problems = []
    if resp.status != 200:
        problems.append(f"status {resp.status} ({body[:200]!r})")
    if headers.get("x-stamp") != entry.expect_stamp:
        problems.append(f"X-Stamp {headers.get('x-stamp')!r}, expected {entry.expect_stamp!r}")
    if headers.get("x-backend") != entry.expect_stamp:
        problems.append(f"served by {headers.get('x-backend')!r}, expected {entry.expect_stamp!r}")
    if headers.get("x-seen-tenant") != entry.expect_tenant:
        problems.append(f"backend saw X-Tenant-ID {headers.get('x-seen-tenant')!r}, expected {entry.expect_tenant!r}")
    if problems:
        raise RuntimeError(f"{entry.label} does not route as the others do: " + "; ".join(problems))


def median_of(rounds: list[dict]) -> dict:
    out = {}
    for key in METRICS:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    if len(rounds) > 1:
        rps = [r["rps"] for r in rounds]
        # Spread across rounds, as a share of the median: how noisy this figure is.
        out["rps_spread"] = (max(rps) - min(rps)) / statistics.median(rps) if statistics.median(rps) else None
        cpu = [r["cpu_us_per_req"] for r in rounds if r.get("cpu_us_per_req")]
        if cpu:
            out["cpu_spread"] = (max(cpu) - min(cpu)) / statistics.median(cpu)
    return out


def run_entries(bench: Bench, entries: list[Entry], *, stop_after: bool = True) -> dict:
    args = bench.args
    for entry in entries:
        bench.log(f"  starting {entry.label}")
        entry.running = entry.system.start(bench.procs, entry.routing, free_port(), bench.proxy_cpus, entry.tag)
        probe(entry)
    for entry in entries:
        if args.warmup > 0:
            wrk(entry.running.port, entry.requests, duration=args.warmup, connections=args.connections,
                threads=args.threads, cpus=bench.load_cpus, tls=entry.routing.tls is not None)
    rounds: dict[str, list[dict]] = {e.label: [] for e in entries}
    for r in range(args.rounds):
        order = entries[r % len(entries):] + entries[:r % len(entries)]
        for entry in order:
            res = measure(entry.running.pids, entry.running.port, entry.requests, duration=args.duration,
                          connections=args.connections, threads=args.threads, cpus=bench.load_cpus,
                          tls=entry.routing.tls is not None)
            rounds[entry.label].append(res)
            flag = f"  ERRORS {res['errors']} {res['error_detail']}" if res["errors"] else ""
            bench.log(f"  round {r + 1}/{args.rounds} {entry.label:<20} {res['rps']:>9.0f} req/s  "
                      f"{res['cpu_us_per_req']:>6.1f} us CPU/req ({res['user_us_per_req']:.0f} user + "
                      f"{res['sys_us_per_req']:.0f} sys)  p99 {res['p99_ms']:.2f} ms  "
                      f"proxy core {100 * res['cpu_util']:.0f}%{flag}")
    out = {}
    for entry in entries:
        pid = entry.running.pid
        out[entry.label] = {
            "system": entry.system.name,
            "median": median_of(rounds[entry.label]),
            "rounds": rounds[entry.label],
            "rss_mib": rss_mib(pid),
            "peak_rss_mib": peak_rss_mib(pid),
            "startup_s": round(entry.running.started_s, 2),
        }
        if stop_after:
            bench.procs.stop(entry.running.proc)
    return out


def ratios(results: dict, a: str, b: str) -> dict:
    if a not in results or b not in results:
        return {}
    ma, mb = results[a]["median"], results[b]["median"]
    out = {}
    for key in ("rps", "cpu_us_per_req", "p50_ms", "p99_ms", "p999_ms"):
        if ma.get(key) and mb.get(key):
            out[key] = round(ma[key] / mb[key], 3)
    if results[a].get("peak_rss_mib") and results[b].get("peak_rss_mib"):
        out["peak_rss_mib"] = round(results[a]["peak_rss_mib"] / results[b]["peak_rss_mib"], 2)
    return out


# -- scenarios ---------------------------------------------------------------------------

def _routing_entries(bench: Bench, mode: str, table, requests: Path, header_for,
                     labels=("router", "haproxy", "nginx"), jwt=None, tag_suffix="") -> list[Entry]:
    routing = Routing(mode, table, bench.backend.addresses, jwt=jwt)
    entries = []
    for name, sysobj in bench.systems(labels).items():
        entries.append(Entry(name, sysobj, routing, requests, header_for(7), stamp_of(7), tenant_id(7),
                             f"{mode}{tag_suffix}"))
    return entries


def scenario_header(bench: Bench) -> dict:
    table = bench.table(100)
    requests = write_requests(bench.tmp / "req-header.txt", [[("X-Tenant-ID", tenant_id(i))] for i in range(100)])
    entries = _routing_entries(bench, "header", table, requests, lambda i: [("X-Tenant-ID", tenant_id(i))],
                               labels=("router", "router-pure", "haproxy", "nginx", "floor"))
    res = run_entries(bench, entries)
    return {"description": "X-Tenant-ID header -> map of 100 pins -> stamp; 100 tenants cycled",
            "results": res, "ratios": {"router/haproxy": ratios(res, "router", "haproxy"),
                                       "router-pure/haproxy": ratios(res, "router-pure", "haproxy"),
                                       "router/nginx": ratios(res, "router", "nginx"),
                                       "floor/haproxy": ratios(res, "floor", "haproxy"),
                                       "router/floor": ratios(res, "router", "floor")},
            "notes": ["floor = benchmarks/floor_proxy.py, a bare uvloop + httptools proxy doing the same header "
                      "routing without any of the router's safety: the Python floor, for reference"]
            if "floor" in res else []}


def scenario_subdomain(bench: Bench) -> dict:
    table = bench.table(100)
    requests = write_requests(bench.tmp / "req-subdomain.txt",
                              [[("Host", f"{tenant_id(i)}.{DOMAIN}")] for i in range(100)])
    entries = _routing_entries(bench, "subdomain", table, requests, lambda i: [("Host", f"{tenant_id(i)}.{DOMAIN}")])
    res = run_entries(bench, entries)
    return {"description": f"Host <tenant>.{DOMAIN} -> map of 100 pins -> stamp; 100 tenants cycled",
            "results": res, "ratios": {"router/haproxy": ratios(res, "router", "haproxy"),
                                       "router/nginx": ratios(res, "router", "nginx")}}


def scenario_jwt(bench: Bench) -> dict:
    table = bench.table(100)
    tenants = [tenant_id(i) for i in range(100)]
    material = jwt_material.material(bench.tmp / "jwt", tenants)
    requests = write_requests(bench.tmp / "req-jwt.txt",
                              [[("Authorization", f"Bearer {material.tokens[t]}")] for t in tenants])
    systems = bench.systems(("router", "haproxy"))
    haproxy = systems.get("haproxy")
    notes = ["nginx (open source) cannot verify a JWT: it sits this scenario out"]
    if haproxy is not None and not haproxy.jwt_supported():
        notes.append("this HAProxy build has no jwt_verify (needs >= 2.5 with OpenSSL): HAProxy skipped")
        systems.pop("haproxy")
    routing = Routing("jwt", table, bench.backend.addresses, jwt=material)
    probe_headers = [("Authorization", f"Bearer {material.tokens[tenant_id(7)]}")]
    entries = [Entry(name, s, routing, requests, probe_headers, stamp_of(7), tenant_id(7), "jwt")
               for name, s in systems.items()]
    if "router" in systems and bench.args.jwt_nocache:
        # The router with its verified-token cache off: what verifying every request costs it.
        nocache = Routing("jwt", table, bench.backend.addresses, jwt=material, jwt_cache=False)
        entries.append(Entry("router (no token cache)", systems["router"], nocache, requests, probe_headers,
                             stamp_of(7), tenant_id(7), "jwt-nocache"))
    res = run_entries(bench, entries)
    return {"description": "RS256 bearer token (tid claim) verified -> map of 100 pins -> stamp; "
                           "100 tokens cycled, each reused (the router caches verified tokens; "
                           "HAProxy runs jwt_verify on every request)",
            "jwt_material": material.source, "notes": notes, "results": res,
            "ratios": {"router/haproxy": ratios(res, "router", "haproxy")}}


def scenario_pins(bench: Bench) -> dict:
    big_n = bench.args.pins
    small, big = bench.table(100), bench.table(big_n)
    small_req = write_requests(bench.tmp / "req-pins-100.txt", [[("X-Tenant-ID", tenant_id(i))] for i in range(100)])
    # The big table is asked for 10,000 tenants spread across it, so lookups are not all
    # served from the same few hot cache lines.
    stride = max(1, big_n // 10_000)
    big_ids = list(range(1, big_n, stride))[:10_000]
    big_req = write_requests(bench.tmp / "req-pins-big.txt", [[("X-Tenant-ID", tenant_id(i))] for i in big_ids])
    entries = []
    label_big = f"{big_n // 1_000_000}M" if big_n % 1_000_000 == 0 else f"{big_n:,}"
    for name, sysobj in bench.systems(("router", "haproxy")).items():
        for count, table, req, probe_i in ((100, small, small_req, 7), (big_n, big, big_req, big_ids[7])):
            routing = Routing("header", table, bench.backend.addresses)
            label = f"{name} {'100' if count == 100 else label_big} pins"
            entries.append(Entry(label, sysobj, routing, req, [("X-Tenant-ID", tenant_id(probe_i))],
                                 stamp_of(probe_i), tenant_id(probe_i), f"pins-{count}"))
    res = run_entries(bench, entries)
    out = {"description": f"header routing with 100 pins vs {big_n:,} pins (router and an HAProxy map "
                          f"of the same size); the big table is asked for {len(big_ids):,} tenants spread across it",
           "pins": big_n, "results": res, "ratios": {}}
    for name in ("router", "haproxy"):
        a, b = f"{name} {label_big} pins", f"{name} 100 pins"
        if a in res and b in res:
            r = ratios(res, a, b)
            r["rss_growth_mib"] = round(res[a]["rss_mib"] - res[b]["rss_mib"], 1)
            r["startup_s_big"] = res[a]["startup_s"]
            out["ratios"][f"{name}: {label_big}/100"] = r
    return out


def scenario_bodies(bench: Bench) -> dict:
    size = bench.args.body_size
    ports = {s: free_port() for s in STAMPS}
    sink = bench.procs.start("sink", pinned([sys.executable, str(HERE / "sink.py"), *map(str, ports.values())],
                                            bench.load_cpus))
    for p in ports.values():
        wait_port(p, 10, sink, "sink")
    table = bench.table(100)
    routing = Routing("header", table, {s: f"127.0.0.1:{p}" for s, p in ports.items()}, max_body=True)
    headers = [("X-Tenant-ID", tenant_id(0))]
    out = {"description": f"{size / GIB:g} GiB streamed through each proxy, upload then download, one "
                          f"connection, loopback sink; memory sampled every 20 ms", "results": {}}
    try:
        for name, sysobj in bench.systems().items():
            bench.log(f"  starting {name}")
            running = sysobj.start(bench.procs, routing, free_port(), bench.proxy_cpus, "bodies")
            pid = running.pid
            row = {"system": name, "rss_idle_mib": round(rss_mib(pid), 1)}
            try:
                for direction, fn in (("upload", bodies.upload), ("download", bodies.download)):
                    cpu0 = cpu_seconds(pid)
                    with bodies.RssWatch(pid) as watch:
                        got = fn(running.port, size, headers)
                    cpu = cpu_seconds(pid) - cpu0
                    row[direction] = {
                        "ok": got["ok"], "status": got["status"], "mib_s": round(got["mib_s"], 1),
                        "seconds": round(got["seconds"], 2), "rss_before_mib": round(watch.base, 1),
                        "rss_peak_mib": round(watch.peak, 1), "rss_growth_mib": round(watch.peak - watch.base, 1),
                        "cpu_s_per_gib": round(cpu / (size / GIB), 2),
                    }
                    bench.log(f"  {name:<8} {direction:<8} {'ok' if got['ok'] else 'FAILED'}  {got['mib_s']:7.0f} MiB/s  "
                              f"RSS {watch.base:.0f} -> peak {watch.peak:.0f} MiB (+{watch.peak - watch.base:.1f})")
            finally:
                bench.procs.stop(running.proc)
            out["results"][name] = row
    finally:
        bench.procs.stop(sink)
    return out


def scenario_reload(bench: Bench) -> dict:
    """Latency during full-table reloads: benchmarks/reload_latency.py owns this measurement
    (its own router, backends and paced load); the harness runs it twice and keeps its JSON.

    `result`: changes 3 s apart, each reload on its own (the target of a
    full-table reload within 2 s, docs/control-plane.md); `back_to_back`: the next change as soon as the last one is
    served, so each reload also competes with the one before's background work (writing
    the last known good, freeing the old table): a stress figure, reported beside it.
    """
    script = HERE / "reload_latency.py"
    if not script.exists():
        return {"skipped": "benchmarks/reload_latency.py is not in this checkout"}
    out: dict = {}
    for key, mode in (("result", ["--gap", "3"]), ("back_to_back", [])):
        got = _run_reload_latency(bench, script, mode)
        if "result" not in got:
            return {**out, **got}
        out.setdefault("command", got["command"])
        out[f"command_{key}"] = got["command"]
        out[key] = got["result"]
    return out


def _run_reload_latency(bench: Bench, script: Path, mode: list[str]) -> dict:
    extra = bench.args.reload_args.split()
    cmd = [sys.executable, str(script), "--json", *([] if "--pins" in extra else ["--pins", str(bench.args.pins)]),
           *mode, *extra]
    bench.log(f"  {' '.join(['reload_latency.py', *cmd[2:]])}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=bench.args.reload_timeout,
                              cwd=str(HERE.parent))
    except subprocess.TimeoutExpired:
        return {"skipped": f"reload_latency.py did not finish within {bench.args.reload_timeout} s"}
    result: dict = {"command": " ".join(["python benchmarks/reload_latency.py", *cmd[2:]]), "exit": done.returncode}
    for line in reversed(done.stdout.splitlines()):
        try:
            result["result"] = json.loads(line)
            break
        except ValueError:
            continue
    if "result" not in result:
        result["skipped"] = f"reload_latency.py gave no JSON (exit {done.returncode})"
        result["output_tail"] = (done.stdout + done.stderr).splitlines()[-15:]
        return result
    r = result["result"]
    served = r.get("served_within_s") or []
    bench.log(f"  quiet p99 {r['quiet']['p99']:.2f} ms, during reloads p99 {r['reload']['p99']:.2f} ms, "
              f"{r['reloads']} reloads, slowest {max(served) if served else float('nan'):.2f} s, "
              f"failed {r['reload']['failed']}")
    return result


def scenario_profile(bench: Bench) -> dict:
    """py-spy on the router while wrk loads it: header routing, then JWT with token reuse,
    then header routing over TLS (`tls`).

    Sampled with --native, which stops the process for each sample: the router runs
    slower while profiled, so these runs are not among the measured rounds.
    """
    if spy.py_spy() is None:
        return {"skipped": "py-spy not installed (pip install py-spy, or the bench extra)"}
    seconds = bench.args.profile_seconds
    results_dir = bench.args.out
    out = {}
    tenants = [tenant_id(i) for i in range(100)]
    for mode in bench.args.profile_modes:
        table = bench.table(100)
        if mode == "jwt":
            material = jwt_material.material(bench.tmp / "jwt", tenants)
            rows = [[("Authorization", f"Bearer {material.tokens[t]}")] for t in tenants]
        else:
            material = None
            rows = [[("X-Tenant-ID", t)] for t in tenants]
        requests = write_requests(bench.tmp / f"req-profile-{mode}.txt", rows)
        tls = bench.tls_material if mode == "tls" else None
        routing = Routing("header" if tls else mode, table, bench.backend.addresses, jwt=material, tls=tls)
        running = RouterSystem(bench.tmp).start(bench.procs, routing, free_port(), bench.proxy_cpus, f"profile-{mode}")
        try:
            wrk(running.port, requests, duration=2, connections=bench.args.connections, threads=bench.args.threads,
                cpus=bench.load_cpus, tls=tls is not None)
            raw = bench.tmp / f"profile-{mode}.txt"
            svg = results_dir / f"profile-{mode}.svg"
            entry = {}
            for fmt, path in (("raw", raw), ("flamegraph", svg)):
                rec = spy.record(running.pid, seconds, path, fmt, native=True)
                load = {}
                t = threading.Thread(target=lambda: load.update(wrk(
                    running.port, requests, duration=seconds + 2, connections=bench.args.connections,
                    threads=bench.args.threads, cpus=bench.load_cpus, tls=tls is not None)))
                t.start()
                log, _ = rec.communicate(timeout=seconds + 60)
                t.join()
                if rec.returncode != 0 or not path.exists():
                    return {"skipped": f"py-spy failed (exit {rec.returncode}): {log.strip()[-500:]}"}
                if fmt == "raw":
                    entry = spy.top_entries(path)
                    entry["rps_while_sampled"] = round(load.get("requests", 0) / (load.get("duration_us", 1) / 1e6))
            entry["flamegraph"] = svg.name
            (results_dir / f"profile-{mode}.txt").write_text(raw.read_text())
            entry["collapsed"] = f"profile-{mode}.txt"
            out[mode] = entry
            top = entry["self_by_function"][:5]
            bench.log(f"  {mode}: {entry['samples']} samples; top self: " +
                      ", ".join(f"{t['entry']} {t['percent']}%" for t in top))
        finally:
            bench.procs.stop(running.proc)
    return out


def scenario_syscalls(bench: Bench) -> dict:
    """System calls per request under the header load, counted by strace -c: whether the
    router asks the kernel for more than HAProxy does for the same routing."""
    import shutil
    if shutil.which("strace") is None:
        return {"skipped": "strace is not installed (apt-get install strace)"}
    table = bench.table(100)
    requests = write_requests(bench.tmp / "req-syscalls.txt", [[("X-Tenant-ID", tenant_id(i))] for i in range(100)])
    routing = Routing("header", table, bench.backend.addresses)
    out = {"description": "strace -c -f on each proxy during 4 s of the header load (strace slows the proxy; "
                          "only the counts per request are kept)", "results": {}}
    for name, sysobj in bench.systems(("router", "haproxy", "nginx", "floor")).items():
        running = sysobj.start(bench.procs, routing, free_port(), bench.proxy_cpus, "syscalls")
        try:
            wrk(running.port, requests, duration=1, connections=bench.args.connections, threads=bench.args.threads,
                cpus=bench.load_cpus)
            trace = bench.tmp / f"strace-{name}.txt"
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(trace), "-p", str(running.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            res = wrk(running.port, requests, duration=4, connections=bench.args.connections,
                      threads=bench.args.threads, cpus=bench.load_cpus)
            tracer.terminate()
            tracer.wait(10)
        finally:
            bench.procs.stop(running.proc)
        n = res["requests"] or 1
        counts = {}
        for line in trace.read_text().splitlines():
            parts = line.split()
            # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                counts[parts[-1]] = round(int(parts[3]) / n, 3)
        per_req = {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v >= 0.01}
        out["results"][name] = {"requests": n, "per_request": per_req, "total_per_request": round(sum(counts.values()), 2)}
        bench.log(f"  {name:<8} {sum(counts.values()):.2f} syscalls/request: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in per_req.items()))
    return out


def scenario_tls(bench: Bench) -> dict:
    """Keep-alive requests over TLS (ECDSA P-256, TLS 1.3 as wrk negotiates it), the header
    routing of `header`; each system also runs the same load in plain HTTP in the same
    rounds, so that what TLS adds to each is the difference of two rows measured alike."""
    table = bench.table(100)
    requests = write_requests(bench.tmp / "req-tls.txt", [[("X-Tenant-ID", tenant_id(i))] for i in range(100)])
    cert = bench.tls_material
    header = [("X-Tenant-ID", tenant_id(7))]
    entries = []
    for name, sysobj in bench.systems().items():
        for tls, label in ((cert, name), (None, f"{name} (plain http)")):
            routing = Routing("header", table, bench.backend.addresses, tls=tls)
            entries.append(Entry(label, sysobj, routing, requests, header, stamp_of(7), tenant_id(7),
                                 "tls" if tls else "tls-plain"))
    res = run_entries(bench, entries)
    out = {"description": "X-Tenant-ID header routing (100 pins) over TLS 1.3, keep-alive, ECDSA P-256 "
                          "certificate; each system also in plain HTTP in the same rounds",
           "results": res, "ratios": {"router/haproxy": ratios(res, "router", "haproxy"),
                                      "router/nginx": ratios(res, "router", "nginx")},
           "tls_cost_us_per_req": {},
           "notes": ["tls: the router also checks every request's Host against the connection's SNI (421); "
                     "HAProxy and nginx here do not"]}
    for name in ("router", "haproxy", "nginx"):
        a, b = res.get(name), res.get(f"{name} (plain http)")
        if a and b:
            out["tls_cost_us_per_req"][name] = round(a["median"]["cpu_us_per_req"] - b["median"]["cpu_us_per_req"], 1)
    return out


def scenario_tls_handshake(bench: Bench) -> dict:
    """New TLS connections per second: full handshakes, then resumed ones (a TLS 1.3 session
    ticket offered on every connection), from benchmarks/handshakes.py's client processes
    on the load core, with the server's CPU read around each round."""
    args = bench.args
    cert = bench.tls_material
    routing = Routing("header", bench.table(100), bench.backend.addresses, tls=cert)
    header = [("X-Tenant-ID", tenant_id(7))]
    entries = [Entry(name, sysobj, routing, Path("-"), header, stamp_of(7), tenant_id(7), "tls-handshake")
               for name, sysobj in bench.systems().items()]
    for entry in entries:
        bench.log(f"  starting {entry.label}")
        entry.running = entry.system.start(bench.procs, routing, free_port(), bench.proxy_cpus, entry.tag)
        probe(entry)
    out = {"description": f"new TLS 1.3 connections per second, ECDSA P-256, {args.handshake_procs} client "
                          "processes (benchmarks/handshakes.py), each connection handshaken, half-closed, "
                          "read to the server's close",
           "command": f"python benchmarks/handshakes.py --port PORT --mode MODE --procs {args.handshake_procs} "
                      f"--duration {args.duration:g}",
           "results": {}, "ratios": {}}
    try:
        for mode in ("full", "resumed"):
            rounds: dict[str, list[dict]] = {e.label: [] for e in entries}
            for entry in entries:        # warm-up, unmeasured
                handshake_round(bench, entry, mode, min(args.warmup, 1.0) or 1.0)
            for r in range(args.rounds):
                for entry in entries[r % len(entries):] + entries[:r % len(entries)]:
                    res = handshake_round(bench, entry, mode, args.duration)
                    rounds[entry.label].append(res)
                    bench.log(f"  {mode:<7} round {r + 1}/{args.rounds} {entry.label:<8} {res['per_second']:>7.0f} conn/s  "
                              f"{res['cpu_us_per_conn']:>6.1f} us CPU/conn  proxy core {100 * res['cpu_util']:.0f}%  "
                              f"resumed {res['resumed']}/{res['connections']}  errors {res['errors']}")
            for label, rs in rounds.items():
                med = {k: statistics.median([x[k] for x in rs]) for k in
                       ("per_second", "cpu_us_per_conn", "user_us_per_conn", "sys_us_per_conn", "cpu_util")}
                med["per_cpu_second"] = 1e6 / med["cpu_us_per_conn"] if med["cpu_us_per_conn"] else None
                med["resumed_share"] = sum(x["resumed"] for x in rs) / max(1, sum(x["connections"] for x in rs))
                med["errors"] = sum(x["errors"] for x in rs)
                out["results"].setdefault(label, {"system": label})[mode] = {"median": med, "rounds": rs}
            a, b = out["results"].get("router", {}).get(mode), out["results"].get("haproxy", {}).get(mode)
            if a and b:
                out["ratios"][f"router/haproxy {mode}"] = {
                    "per_second": round(a["median"]["per_second"] / b["median"]["per_second"], 3),
                    "cpu_us_per_conn": round(a["median"]["cpu_us_per_conn"] / b["median"]["cpu_us_per_conn"], 3)}
    finally:
        for entry in entries:
            bench.procs.stop(entry.running.proc)
    return out


def handshake_round(bench: Bench, entry: Entry, mode: str, duration: float) -> dict:
    """One handshakes.py run; the CPU is every process of the proxy's (as measure() sums it)."""
    pids = entry.running.pids

    def cpu() -> tuple[float, float]:
        times = [cpu_times(pid) for pid in pids]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    cmd = pinned([sys.executable, str(HERE / "handshakes.py"), "--port", str(entry.running.port),
                  "--server-name", entry.routing.tls.server_name, "--mode", mode,
                  "--procs", str(bench.args.handshake_procs), "--duration", f"{duration:g}"], bench.load_cpus)
    user0, sys0 = cpu()
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - t0
    user1, sys1 = cpu()
    got = next((json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                if line.startswith("HANDSHAKES_JSON ")), None)
    if got is None:
        raise RuntimeError(f"handshakes.py gave no result (exit {done.returncode}): {done.stderr[-800:]}")
    n = got["connections"] or 1
    user, system = user1 - user0, sys1 - sys0
    return {**got, "cpu_us_per_conn": (user + system) / n * 1e6, "user_us_per_conn": user / n * 1e6,
            "sys_us_per_conn": system / n * 1e6, "cpu_util": (user + system) / wall if wall else None}


from workers import scenario_workers  # noqa: E402 - it uses this module's load loop

SCENARIOS = {
    "header": scenario_header,
    "subdomain": scenario_subdomain,
    "jwt": scenario_jwt,
    "pins": scenario_pins,
    "bodies": scenario_bodies,
    "reload": scenario_reload,
    "syscalls": scenario_syscalls,
    "profile": scenario_profile,
    "tls": scenario_tls,
    "tls-handshake": scenario_tls_handshake,
    "workers": scenario_workers,
}
