"""Instructions per request of a live proxy under wrk, counted by callgrind.

    .venv/bin/python benchmarks/live_callgrind.py [--systems router,router-pure,floor,haproxy]
        [--short 8] [--long 24] [--tls] [--by-object] [--json PATH] [--cg-dir DIR]

Systems: router (the compiled data path), router-pure (STAMP_ROUTER_PURE=1), floor
(benchmarks/floor_proxy.py) and haproxy, each doing the header routing of `run.py`'s header
scenario (100 pinned tenants, an nginx backend, one router worker, one HAProxy thread).

Each system runs twice, a fresh process each time, under `valgrind --tool=callgrind`:
once with `wrk -t1 -c64` for --short seconds, once for --long. Start-up, warm-up and
shutdown cost the same in both runs, so

    instructions per request = (totals_long - totals_short) / (requests_long - requests_short)

counts the steady-state work of a request in user space (the proxy, the interpreter,
the libraries, libc; not the kernel). The router's worker is a forked child with a
callgrind file of its own: that file is the one counted. Under callgrind everything runs
~50x slower (the router takes 20-60 s to start): a few minutes per system.

--tls: the same routing with clients over TLS (`run.py`'s `tls` scenario: its ECDSA
P-256 certificate for localhost, wrk to https://localhost); the router and HAProxy only.

--by-object splits each figure by shared object (libpython, httptools' parser, uvloop's
loop, the router's compiled modules, libc, haproxy); --cg-dir keeps the callgrind files
for your own `callgrind_annotate`. Needs valgrind, wrk, nginx and haproxy on PATH.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import ssl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import LUA, url, write_requests  # noqa: E402
from procs import Procs, ToolMissing, free_port, require  # noqa: E402
from systems import (ROOT, STAMPS, Backend, HaproxySystem, PureRouterSystem, RouterSystem, Routing,  # noqa: E402
                     tenant_id, write_table)

SYSTEMS = ("router", "router-pure", "floor", "haproxy")
READY_S = 300         # from exec until the proxy answers, on a loaded machine
DUMP_S = 180          # from the stop signal until every callgrind file is written

# valgrind 3.19 lacks pidfd_open (syscall 434), by which the router's supervisor hears of
# a worker's exit. The stand-in: a pipe whose write end a thread closes once the worker has
# exited (WNOWAIT leaves the reaping to the supervisor), so the read end turns readable as
# the pidfd would. A worker forked later would inherit earlier write ends: fine for one.
ROUTER_BOOTSTRAP = """
import os, sys, threading
def pidfd_open(pid, flags=0):
    r, w = os.pipe()
    def watch():
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        os.close(w)
    threading.Thread(target=watch, daemon=True).start()
    return r
os.pidfd_open = pidfd_open
from router.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Setup:
    """The temp dir's backend, pin table, request file and routing, shared by every run."""

    def __init__(self, tmp: Path, procs: Procs, tls: bool = False) -> None:
        self.tmp = tmp
        self.procs = procs
        backend = Backend(tmp, {stamp: free_port() for stamp in STAMPS})
        backend.start(procs, None)
        cert = None
        if tls:
            import tls_material
            cert = tls_material.material(tmp / "tls")
        self.routing = Routing("header", write_table(tmp / "tables", 100), backend.addresses, tls=cert)
        self.requests = write_requests(tmp / "req-header.txt", [[("X-Tenant-ID", tenant_id(i))] for i in range(100)])

    def command(self, system: str, port: int, tag: str) -> tuple[list[str], dict[str, str], signal.Signals]:
        """What runs the system on `port`, its environment, and the signal that ends it cleanly."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if system in ("router", "router-pure"):
            router = (RouterSystem if system == "router" else PureRouterSystem)(self.tmp, workers=1)
            cfg = router.config(self.routing, port, free_port(), tag)
            return [sys.executable, "-c", ROUTER_BOOTSTRAP, "serve", "-c", str(cfg)], env | router.env, signal.SIGINT
        if system == "floor":
            stamps = [f"{stamp}={address}" for stamp, address in self.routing.backends.items()]
            return ([sys.executable, str(HERE / "floor_proxy.py"), str(port), str(self.routing.table.router_json),
                     *stamps], env, signal.SIGINT)
        cfg = HaproxySystem(self.tmp).config(self.routing, port, tag)
        # -db: foreground, no master: the one process is the one that proxies.
        return ["haproxy", "-db", "-f", str(cfg)], env, signal.SIGTERM


def answers(port: int, tls=None) -> bool:
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file))
        conn = http.client.HTTPSConnection(tls.server_name, port, timeout=10, context=ctx)
    try:
        conn.request("GET", "/", headers={"X-Tenant-ID": tenant_id(1)})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def totals(path: Path) -> int | None:
    """The file's instruction total; None while callgrind has not finished writing it."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return None


def measure(setup: Setup, system: str, secs: float, cg_dir: Path, log) -> dict:
    """One fresh process of `system` under callgrind, `secs` of wrk against it, then stopped."""
    out = cg_dir / f"{system}-{secs:g}s"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("cg.*"):        # a reused --cg-dir
        stale.unlink()
    port = free_port()
    cmd, env, stop = setup.command(system, port, f"cg{secs:g}")
    name = f"{system}-{secs:g}s"
    proc = setup.procs.start(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", *cmd],
                             env=env, cwd=str(ROOT))
    t0 = time.monotonic()
    while not answers(port, setup.routing.tls):
        if proc.poll() is not None:
            raise RuntimeError(f"{system} exited with {proc.returncode}:\n{setup.procs.log_tail(name)}")
        if time.monotonic() - t0 > READY_S:
            raise RuntimeError(f"{system} did not answer within {READY_S} s:\n{setup.procs.log_tail(name)}")
        time.sleep(0.5)
    log(f"  {name}: answering after {time.monotonic() - t0:.0f} s; wrk for {secs:g} s")
    # --timeout 10s: wrk's 2 s default is short for a proxy under callgrind.
    wrk = subprocess.run(["wrk", "-t1", "-c64", f"-d{secs:g}s", "--timeout", "10s", "-s", str(LUA),
                          url(port, setup.routing.tls is not None), "--", str(setup.requests)],
                         capture_output=True, text=True, timeout=secs + 120)
    found = re.search(r"^\s*(\d+) requests in", wrk.stdout, re.M)
    if not found:
        raise RuntimeError(f"wrk gave no request count (exit {wrk.returncode}):\n{wrk.stdout}{wrk.stderr}")
    problems = [line.strip() for line in wrk.stdout.splitlines() if line.strip().startswith(("Non-2xx", "Socket errors"))]
    if problems:
        log(f"  {name}: wrk reports {'; '.join(problems)}")
    # The router's supervisor exits after its worker (the stand-in tells it when): once the
    # first process is gone, every file is written, or incomplete and refused below.
    os.killpg(proc.pid, stop)
    try:
        proc.wait(DUMP_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{system} still running {DUMP_S} s after {stop.name}:\n{setup.procs.log_tail(name)}")
    setup.procs.stop(proc)
    files = sorted(out.glob("cg.*"))
    if not files or None in map(totals, files):
        raise RuntimeError(f"{system}: callgrind left no complete file in {out}:\n{setup.procs.log_tail(name)}")
    # The router's supervisor has a file of its own: the worker's (any other pid) is the proxy.
    workers = [f for f in files if f.name != f"cg.{proc.pid}"]
    if system.startswith("router") and not workers:
        raise RuntimeError(f"{system}: no callgrind file of its worker in {out}")
    counted = max(workers or files, key=totals)
    return {"requests": int(found.group(1)), "totals": totals(counted), "file": counted}


def annotate(path: Path) -> dict[str, Counter]:
    """Instructions by function ("file:function"), each split by the object it ran in."""
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", str(path)],
                          capture_output=True, text=True, check=True).stdout
    rows, homes = [], defaultdict(Counter)
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[([^\]]*)\])?\s*$", line)
        if m and "PROGRAM TOTALS" not in line:
            fn, obj, n = m.group(2), m.group(3), int(m.group(1).replace(",", ""))
            rows.append((fn, obj, n))
            if obj:
                homes[fn.split(":", 1)[-1]][obj] += n
    out: dict[str, Counter] = defaultdict(Counter)
    for fn, obj, n in rows:
        # Code inlined from a header (Python's object.h) comes without its object: it is
        # the object of the function it was inlined into.
        home = homes.get(fn.split(":", 1)[-1])
        out[fn][obj or (home.most_common(1)[0][0] if home else "?")] += n
    return out


def object_label(path: str) -> str:
    """A short name: the router's modules by package path, site-packages by package, else the file."""
    path = re.sub(r"\.(cpython-[^.]*|abi3)\.so$", "", path)
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    return path[len(str(ROOT)) + 1:] if path.startswith(f"{ROOT}/") else path.rsplit("/", 1)[-1]


def by_object(short: Path, long: Path, requests: int) -> dict[str, float]:
    """Per-request instructions by object. A function found in two objects with the same
    symbols (libcrypto and cryptography's bundled copy) may sit in either from one run to
    the next: each function's difference goes to the object it ran most in, in the long run."""
    a, b = annotate(short), annotate(long)
    objects: Counter = Counter()
    for fn in b.keys() | a.keys():
        where = (b.get(fn) or a[fn]).most_common(1)[0][0]
        objects[object_label(where)] += (sum(b.get(fn, {}).values()) - sum(a.get(fn, {}).values())) / requests
    return {obj: round(v, 1) for obj, v in objects.most_common() if abs(v) >= 1}


def options(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/live_callgrind.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)}")
    p.add_argument("--short", type=float, default=8.0, help="seconds of load in the short run (default 8)")
    p.add_argument("--long", type=float, default=24.0, help="seconds of load in the long run (default 24)")
    p.add_argument("--tls", action="store_true", help="clients over TLS (router and haproxy only)")
    p.add_argument("--by-object", action="store_true", help="also split each figure by shared object")
    p.add_argument("--json", type=Path, help="write the figures to this file too")
    p.add_argument("--cg-dir", type=Path, help="keep the callgrind files here (default: deleted)")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := [s for s in args.systems if s not in SYSTEMS]:
        p.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if args.tls and (other := [s for s in args.systems if s not in ("router", "router-pure", "haproxy")]):
        p.error(f"--tls: {', '.join(other)} has no TLS listener here")
    if not 1 <= args.short < args.long:
        p.error("need 1 <= --short < --long")
    return args


def main(argv: list[str]) -> int:
    args = options(argv)
    try:
        for tool in ("valgrind", "callgrind_annotate", "wrk", "nginx", *(["haproxy"] * ("haproxy" in args.systems))):
            require(tool, "apt-get install valgrind wrk nginx-light haproxy")
    except ToolMissing as exc:
        print(f"live_callgrind: {exc}", file=sys.stderr)
        return 2
    # SIGINT too: a shell that starts this in the background hands it SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.0f}s] {msg}", file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="stamp-livecg-"))
    procs = Procs(tmp)
    cg_dir = args.cg_dir or tmp / "callgrind"
    results = {}
    try:
        setup = Setup(tmp, procs, tls=args.tls)
        for system in args.systems:
            short, long = (measure(setup, system, secs, cg_dir, log) for secs in (args.short, args.long))
            requests = long["requests"] - short["requests"]
            if requests <= 0:
                raise RuntimeError(f"{system}: the long run served no more requests than the short one")
            res = {"requests_short": short["requests"], "requests_long": long["requests"],
                   "totals_short": short["totals"], "totals_long": long["totals"],
                   "instructions_per_request": round((long["totals"] - short["totals"]) / requests)}
            if args.by_object:
                res["by_object"] = by_object(short["file"], long["file"], requests)
            results[system] = res
            log(f"{system}: {res['instructions_per_request']:,} instructions per request")
    except KeyboardInterrupt:
        print("\nlive_callgrind: interrupted; stopping every child process", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"live_callgrind: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'system':<12} {'requests short':>14} {'requests long':>14} {'instr/request':>14}")
    for system, res in results.items():
        print(f"{system:<12} {res['requests_short']:>14,} {res['requests_long']:>14,} "
              f"{res['instructions_per_request']:>14,}")
    for system, res in results.items():
        if "by_object" in res:
            print(f"\n{system}, instructions per request by object:")
            for obj, v in res["by_object"].items():
                print(f"  {v:>10,.0f}  {obj}")
    if args.json:
        doc = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "command": " ".join(["benchmarks/live_callgrind.py", *argv]),
               "settings": {"short_s": args.short, "long_s": args.long, "wrk": "-t1 -c64", "tls": args.tls}, "systems": results}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
