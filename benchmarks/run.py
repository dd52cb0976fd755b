"""stamp-router against HAProxy and nginx, same routing, one run: `make bench` runs this.

    python benchmarks/run.py [--scenarios header,subdomain,...] [--rounds N] [--duration S] ...

Writes benchmarks/results/latest.{json,md,png} (and the py-spy profiles next to them).
See benchmarks/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from procs import Procs, ToolMissing, machine, require  # noqa: E402
from scenarios import SCENARIOS, Bench  # noqa: E402

DEFAULT_SCENARIOS = ("header", "subdomain", "jwt", "pins", "bodies", "reload", "tls", "tls-handshake", "syscalls",
                     "profile", "workers")
# Every core this run may use, before cpu_plan() takes the proxy's core away from the
# harness (the workers scenario gives all of them to the proxy and the load).
ALL_CPUS = sorted(os.sched_getaffinity(0))


def parse_size(text: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def options(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--systems", default="router,router-pure,haproxy,nginx,floor",
                   help="systems to compare (default: router,haproxy,nginx and, in the header scenario, "
                        "router-pure: the router's data path interpreted, STAMP_ROUTER_PURE=1, and "
                        "floor: benchmarks/floor_proxy.py)")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds per system (default 5)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per round (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load per system first (default 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk keep-alive connections (default 64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--pins", type=int, default=1_000_000, help="size of the big pin table (default 1000000)")
    p.add_argument("--body-size", type=parse_size, default=1024 ** 3, help="upload/download size (default 1GiB)")
    p.add_argument("--handshake-procs", type=int, default=4,
                   help="client processes of the tls-handshake scenario (default 4)")
    p.add_argument("--no-jwt-nocache", dest="jwt_nocache", action="store_false",
                   help="leave out the router with its token cache off from the JWT scenario")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the proxy and the load generator to separate cores")
    p.add_argument("--profile-seconds", type=int, default=10, help="py-spy sampling time per profile (default 10)")
    p.add_argument("--profile-modes", default="header,jwt,tls",
                   help="router routings to profile: header, jwt, tls (header routing over TLS); default all three")
    p.add_argument("--reload-args", default="", help="extra arguments passed to benchmarks/reload_latency.py")
    p.add_argument("--reload-timeout", type=int, default=300, help="seconds reload_latency.py may take (default 300)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory (default benchmarks/results)")
    p.add_argument("--update-readme", action="store_true",
                   help="also put the new table into benchmarks/README.md and README.md (between bench markers)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir of configs and logs")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.profile_modes = [m.strip() for m in args.profile_modes.split(",") if m.strip()]
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds must be >= 1 and --duration >= 1 s (CPU time is read in 10 ms ticks)")
    return args


def versions() -> str:
    def first(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except Exception:
            return "?"
    import httptools
    import uvloop
    return "; ".join([
        first(["haproxy", "-v"]).split(" - ")[0], first(["nginx", "-v"]).replace("nginx version: ", ""),
        first(["wrk", "-v"]).split(" [")[0], f"Python {sys.version.split()[0]}",
        f"uvloop {uvloop.__version__}", f"httptools {httptools.__version__}"])


def git_state() -> dict:
    """Which code was measured: the commit, and whether the data path had local edits."""
    def git(*a):
        out = subprocess.run(["git", *a], capture_output=True, text=True, cwd=HERE.parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "router_uncommitted_changes": bool(git("status", "--porcelain", "--", "router"))}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_plan(args) -> tuple[str | None, str | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if not args.pin or len(cpus) < 2:
        why = "--no-pin" if not args.pin else "one usable core"
        return None, None, f"no core pinning ({why})"
    require("taskset", "apt-get install util-linux")
    proxy, load = str(cpus[-1]), ",".join(map(str, cpus[:-1]))
    # The harness itself (and the 1 GiB client in it) stays off the proxy's core too.
    os.sched_setaffinity(0, set(cpus[:-1]))
    return proxy, load, f"proxy under test pinned to CPU {proxy}, wrk + backend + harness to CPU {load} (taskset)"


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def update_readme(path: Path, text: str, marker: str = "bench") -> bool:
    """Replace what sits between the marker comments; a file without them is left alone."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if not path.exists():
        return False
    doc = path.read_text()
    if begin not in doc or end not in doc:
        return False
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + begin + "\n" + text + end + tail)
    return True


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = options(argv)
    try:
        require("wrk", "apt-get install wrk (make bench installs wrk, haproxy and nginx-light)")
        for name in args.systems:
            if name in ("haproxy", "nginx"):
                require(name, f"apt-get install {'nginx-light' if name == 'nginx' else name}")
        require("nginx", "the backend is nginx: apt-get install nginx-light")
    except ToolMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # SIGINT too: a shell that starts the run in the background hands it SIGINT ignored,
    # and Ctrl-C (or kill -INT) must still stop it and its children.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="stamp-bench-"))
    procs = Procs(tmp)
    started = time.monotonic()
    command = "make bench" + (f" BENCH_ARGS='{shlex.join(argv)}'" if argv else "") \
        if os.environ.get("MAKELEVEL") else shlex.join(["python", "benchmarks/run.py", *argv])
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "loadavg_start": loadavg(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)} | {"out": str(args.out)},
        "scenarios": {},
    }

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    try:
        proxy_cpus, load_cpus, pinning = cpu_plan(args)
        doc["settings"]["pinning"] = pinning
        log(f"temp dir {tmp}; {pinning}; load average {doc['loadavg_start']}")
        bench = Bench(args, tmp, procs, proxy_cpus, load_cpus, log=log, all_cpus=ALL_CPUS)
        for name in args.scenarios:
            log(f"scenario {name}")
            t0 = time.monotonic()
            try:
                doc["scenarios"][name] = SCENARIOS[name](bench)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
                # One broken scenario must not cost the others' results.
                log(f"  {name} FAILED: {exc}")
                doc["scenarios"][name] = {"failed": str(exc)}
            doc["scenarios"][name]["elapsed_s"] = round(time.monotonic() - t0, 1)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping every child process", file=sys.stderr)
        procs.close()
        return 130
    finally:
        procs.close()
        if not args.keep_tmp:
            subprocess.run(["rm", "-rf", str(tmp)])

    doc["loadavg_end"] = loadavg()
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    write_atomic(args.out / "latest.json", json.dumps(doc, indent=2))
    md = report.markdown(doc)
    write_atomic(args.out / "latest.md", md)
    problem = report.chart(doc, args.out / "latest.png")
    if problem:
        log(f"chart: {problem}")
    if args.update_readme:
        block = (f"Latest run: {doc['date']}, `{doc['command']}`, {doc['machine']['cpu_model']} "
                 f"({doc['machine']['cores']} cores); {doc['settings']['pinning']}.\n\n"
                 + report.summary_table(doc))
        for path in (HERE / "README.md", HERE.parent / "README.md"):
            if update_readme(path, block):
                log(f"updated {path.relative_to(HERE.parent)}")
        profile = report.profile_lines(doc)
        if profile and update_readme(HERE / "README.md", "\n".join(profile[3:]) + "\n", marker="profile"):
            log("updated the profile in benchmarks/README.md")
    print()
    print(md)
    log(f"done in {doc['elapsed_s']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
