"""How long a health transition takes to reach every worker.

Self-contained: two loopback backends (A, whose health check this script turns off and
on, and B), `stamp-router serve` with 2 workers probing them every 100 ms with fall =
rise = 1, and one keep-alive client connection held by each worker sending requests
back to back. For each transition of A (down, then up, `--transitions` times):

    supervisor   when GET /stamps (answered by the supervisor, which sends the transition
                 to the workers in the same step) first shows it, polled every 2 ms
    worker lag   per worker: down, the time from then to the send of the last request that
                 worker still gave to A; up, to the send of the first request it gave to A
                 again (0 when the worker was there first: the poll's own delay)

    python benchmarks/health_fanout.py [--transitions 10] [--json]

Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.process.support import worker_of_connections  # noqa: E402 - the tests' reading of /proc


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                status = 200 if not self.path.startswith("/health") or backend.healthy else 503
                self.send_response(status)
                self.send_header("X-Backend-Id", backend.name)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return json.loads(resp.read())
    finally:
        conn.close()


class Client(threading.Thread):
    """Requests back to back on one keep-alive connection: (send time, backend) each."""

    def __init__(self, conn: http.client.HTTPConnection, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.conn, self.stop, self.log = conn, stop, []

    def run(self) -> None:
        for _ in range(2_000_000):                  # a bound; stop ends it long before
            if self.stop.is_set():
                return
            sent = time.monotonic()
            self.conn.request("GET", "/", headers={"X-Tenant-ID": "acme"})
            resp = self.conn.getresponse()
            resp.read()
            self.log.append((sent, resp.getheader("X-Backend-Id")))


def a_healthy(admin: int, address: str) -> bool:
    stamps = get_json(admin, "/stamps")["stamps"]
    return next(b["healthy"] for s in stamps for b in s["backends"] if b["address"] == address)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    a, b = Backend("A"), Backend("B")
    tmp = Path(tempfile.mkdtemp(prefix="health-fanout-"))
    port, admin = free_port(), free_port()
    (tmp / "router.toml").write_text(f"""
[listen]
http = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[process]
workers = 2
[control]
watch_file = false
state_dir = "{tmp / 'state'}"
[routing]
sources = ["header"]
[tenants]
acme = "eu-1"
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["{a.address}", "{b.address}"]
health = {{ path = "/health", interval = "100ms", timeout = "1s", rise = 1, fall = 1 }}
""")
    stderr = open(tmp / "router.stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "router", "serve", "-c", str(tmp / "router.toml")],
                            stdout=subprocess.DEVNULL, stderr=stderr, cwd=str(ROOT), start_new_session=True)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = get_json(admin, "/readyz")
                if ready["ready"]:
                    break
            except (OSError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"router did not start: {(tmp / 'router.stderr').read_text()[-2000:]}")
            time.sleep(0.05)
        pids = [w["pid"] for w in ready["checks"]["workers"]["workers"]]
        # One connection per worker: open some, keep the first each worker accepted.
        conns = []
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.connect()
            conns.append(conn)
            owners = worker_of_connections(port, pids)
            if len({owners.get(c.sock.getsockname()[1]) for c in conns} - {None}) == len(pids):
                break
        owners = worker_of_connections(port, pids)
        mine = {}
        for c in conns:
            mine.setdefault(owners.get(c.sock.getsockname()[1]), c)
        clients = {pid: Client(mine[pid], stop) for pid in pids}
        for client in clients.values():
            client.start()
        time.sleep(0.5)
        results = []
        for n in range(args.transitions * 2):
            going_down = n % 2 == 0
            a.healthy = not going_down
            t0 = time.monotonic()
            while a_healthy(admin, a.address) == going_down:
                if time.monotonic() - t0 > 10:
                    raise SystemExit("the supervisor did not see the transition within 10 s")
                time.sleep(0.002)
            seen = time.monotonic()
            time.sleep(0.5)                          # every worker has long had it by then
            lags = []
            for pid, client in clients.items():
                log = list(client.log)
                if going_down:
                    last = max((t for t, who in log if who == "A" and t <= seen + 0.5), default=seen)
                    lags.append(max(0.0, last - seen))
                else:
                    first = min((t for t, who in log if who == "A" and t >= seen - 0.5), default=None)
                    lags.append(max(0.0, first - seen) if first is not None else None)
            results.append({"transition": "down" if going_down else "up", "supervisor_s": round(seen - t0, 3),
                            "worker_lag_ms": [None if x is None else round(x * 1000, 1) for x in lags]})
        stop.set()
        lag = [x for r in results for x in r["worker_lag_ms"] if x is not None]
        out = {"workers": len(pids), "transitions": len(results), "results": results,
               "max_lag_ms": max(lag) if lag else None, "median_lag_ms": statistics.median(lag) if lag else None,
               "missing": sum(1 for r in results for x in r["worker_lag_ms"] if x is None)}
        if args.json:
            print(json.dumps(out))
        else:
            for r in results:
                print(f"{r['transition']:<4} supervisor after {r['supervisor_s']:.3f} s; worker lag ms {r['worker_lag_ms']}")
            print(f"max worker lag {out['max_lag_ms']} ms, median {out['median_lag_ms']} ms")
        return 0
    finally:
        stop.set()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        stderr.close()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
