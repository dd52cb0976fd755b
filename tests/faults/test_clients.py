"""Client faults on the proxy port: slow heads (slowloris), slow bodies, clients that never
read their response, 20,000 connections opened at once, a flood of new connections.

Each attack runs in a separate process (tests/faults/attackers.py) while a well-behaved
client, here, sends requests and measures their latency: every one of its requests must
be answered 200. The p99 it saw is printed (`pytest tests/faults/test_clients.py -s`) and
quoted in docs/operations.md; it is not asserted, a loaded machine may be slow. What is
asserted: the attacker is cut off by the deadline that applies, the backend is not
blamed for a client's slowness, and the worker's memory stays within the bound the docs
give.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import Backend, start_backend, stop_backend, wait_until

REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT = 2.0
UPSTREAM_TIMEOUT = 3.0
MAX_CONNECTIONS = 2000
MiB = 1024 * 1024
SLACK = 3.0          # on top of a deadline: the 0.25 s sweep and a loaded machine


@pytest.fixture(scope="module")
def bench(bg, tmp_path_factory):
    backend = bg.run(start_backend(Backend("eu-1")))
    doc = {"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [backend.address])],
           "tenants": {"acme": "eu-1"},
           "listen": {"max_connections": MAX_CONNECTIONS, "backlog": 4096},
           "timeouts": {"request_header": HEADER_TIMEOUT, "upstream": UPSTREAM_TIMEOUT}}
    proc = RouterProcess(tmp_path_factory.mktemp("client-faults"), doc).start()
    try:
        yield proc, backend
    finally:
        proc.stop()
        bg.run(stop_backend(backend))


def worker_rss(proc: RouterProcess) -> int:
    pid = proc.admin_json("/readyz")["checks"]["workers"]["workers"][0]["pid"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class WellBehaved(threading.Thread):
    """Sequential requests until stopped: on one keep-alive connection, or a new
    connection each (`fresh`). Records each latency and any answer that is not 200."""

    def __init__(self, port: int, fresh: bool = False) -> None:
        super().__init__(daemon=True)
        self.port, self.fresh = port, fresh
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            started = time.perf_counter()
            try:
                conn.request("GET", "/well-behaved", headers={"X-Tenant-ID": "acme"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    self.failures.append(f"status {resp.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = None
                continue
            self.latencies.append(time.perf_counter() - started)
            if self.fresh:
                conn.close()
                conn = None
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def finish(self, what: str) -> dict:
        self.stop.set()
        self.join(15)
        lat = sorted(self.latencies)
        figures = {"attack": what, "requests": len(lat),
                   "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                   "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None}
        print(f"\nwell-behaved client during {what}: {json.dumps(figures)}")
        assert not self.failures, self.failures[:5]
        assert len(lat) >= 20, figures
        return figures


def attack(mode: str, port: int, count: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.faults.attackers", mode, str(port), str(count), str(seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)


def outcome(attacker: subprocess.Popen, seconds: float) -> dict:
    out, _ = attacker.communicate(timeout=seconds + 30)
    assert attacker.returncode == 0
    result = json.loads(out)
    print(f"attacker: {json.dumps(result)}")
    return result


def peak_rss_during(proc: RouterProcess, attacker: subprocess.Popen) -> int:
    peak = 0
    while attacker.poll() is None:
        peak = max(peak, worker_rss(proc))
        time.sleep(0.1)
    return peak


def cut_off_under_attack(proc, mode: str, count: int, deadline: float, what: str) -> dict:
    """`count` attackers of `mode` while the well-behaved client runs: each is answered
    408 and closed within `deadline` (plus slack)."""
    client = WellBehaved(proc.port)
    client.start()
    result = outcome(attack(mode, proc.port, count, deadline + 6), deadline + 6)
    client.finish(what)
    assert result["closed"] == count and result["statuses"] == {"408": count}, result
    assert result["last_closed_after"] < deadline + SLACK, result
    return result


def test_slowloris_heads_get_408_at_the_header_deadline(bench):
    # One byte every 0.2 s does not extend the deadline: it counts from the connection.
    cut_off_under_attack(bench[0], "slowloris", 500, HEADER_TIMEOUT, "500 slowloris connections")


def test_slow_bodies_get_408_and_do_not_blame_the_backend(bench):
    proc, backend = bench
    errors_before = proc.metric("stamp_router_upstream_errors_total", stamp="eu-1", kind="timeout")
    cut_off_under_attack(proc, "slowbody", 200, UPSTREAM_TIMEOUT, "200 stalled request bodies")
    assert proc.metric("stamp_router_upstream_errors_total", stamp="eu-1", kind="timeout") == errors_before
    assert proc.metric("stamp_router_backend_ejected", stamp="eu-1", backend=backend.address) == 0


def test_clients_that_never_read_hold_bounded_memory_and_are_cut_off(bench):
    """50 clients each ask for 256 MiB and read none of it: flow control stops reading
    from the backend once a client's buffers are full, so the worker holds about one
    socket buffer and one read per client; after timeouts.upstream without progress the
    client is disconnected, and the backend is not blamed."""
    proc, backend = bench
    errors_before = proc.metric("stamp_router_upstream_errors_total", stamp="eu-1", kind="timeout")
    before = worker_rss(proc)
    client = WellBehaved(proc.port)
    client.start()
    attacker = attack("noread", proc.port, 50, UPSTREAM_TIMEOUT + 4)
    peak = peak_rss_during(proc, attacker)
    outcome(attacker, UPSTREAM_TIMEOUT + 4)
    client.finish("50 clients not reading 256 MiB each")
    growth = peak - before
    print(f"worker RSS {before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB (+{growth / MiB:.1f} MiB)")
    assert growth < 50 * 1 * MiB, f"+{growth / MiB:.1f} MiB for 50 stalled downloads"   # docs: under 1 MiB each
    assert proc.metric("stamp_router_upstream_errors_total", stamp="eu-1", kind="timeout") == errors_before
    wait_until(lambda: proc.metric("stamp_router_requests_in_flight") == 0, UPSTREAM_TIMEOUT + SLACK,
               message="the stalled downloads cut off")


def test_20000_connections_at_once_against_max_connections(bench):
    """Two processes open 10,000 connections each at once (one process could not: the
    open-file limit here is 20,000). The worker admits MAX_CONNECTIONS, closes the rest at
    accept, and answers the well-behaved client's keep-alive connection throughout."""
    proc, _ = bench
    refused_before = proc.metric("stamp_router_connections_refused_total")
    before = worker_rss(proc)
    client = WellBehaved(proc.port)
    client.start()
    wait_until(lambda: len(client.latencies) > 0, 10, message="the well-behaved client connected")
    attackers = [attack("connect", proc.port, 10000, 6) for _ in range(2)]
    peak, most_open = 0, 0
    while any(a.poll() is None for a in attackers):
        peak = max(peak, worker_rss(proc))
        most_open = max(most_open, proc.metric("stamp_router_client_connections"))
        time.sleep(0.2)
    results = [outcome(a, 6) for a in attackers]
    client.finish("20,000 connections opened at once")
    growth = peak - before
    print(f"worker RSS {before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB (+{growth / MiB:.1f} MiB); "
          f"at most {most_open:.0f} connections open")
    assert most_open <= MAX_CONNECTIONS
    assert proc.metric("stamp_router_connections_refused_total") > refused_before
    assert sum(r["connected"] + r["reset"] + r["pending"] + r["closed"] for r in results) == 20000
    assert growth < MAX_CONNECTIONS * 32 * 1024, f"+{growth / MiB:.1f} MiB"     # docs: under 32 KiB a connection


def test_a_flood_of_new_connections_leaves_new_clients_answered(bench):
    proc, _ = bench
    client = WellBehaved(proc.port, fresh=True)
    client.start()
    attackers = [attack("flood", proc.port, 0, 5) for _ in range(2)]
    results = [outcome(a, 5) for a in attackers]
    client.finish(f"a flood of {sum(r['per_second'] for r in results)} new connections/s")
    assert all(r["connections"] > 0 for r in results)


def test_a_slow_upload_that_keeps_coming_is_not_cut_off(bench):
    """Body bytes are progress: an upload longer than timeouts.upstream, whose chunks keep
    coming, reaches the backend whole (the backend's time to answer runs from its end)."""
    proc, _ = bench
    chunk, chunks = b"u" * 1000, 8
    sock = __import__("socket").create_connection(("127.0.0.1", proc.port), timeout=10)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\nContent-Length: %d\r\n\r\n"
                 % (len(chunk) * chunks))
    started = time.monotonic()
    for _ in range(chunks):            # 8 x 0.6 s: past the 3 s upstream timeout
        sock.sendall(chunk)
        time.sleep(0.6)
    answer = b""
    while b"}" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    assert time.monotonic() - started > UPSTREAM_TIMEOUT
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["bytes"] == len(chunk) * chunks


def test_the_router_raises_its_open_file_limit_and_says_when_it_is_too_low(caplog):
    """`serve` raises its soft RLIMIT_NOFILE to the hard limit (workers inherit it) and logs
    a WARNING when even that cannot hold listen.max_connections and their upstreams."""
    import resource

    from router.server import _open_files_for

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit here: nothing is ever too low")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 1024), hard))
        with caplog.at_level("WARNING", logger="stamp_router"):
            _open_files_for(100)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert not caplog.records
        with caplog.at_level("WARNING", logger="stamp_router"):
            _open_files_for(hard)
        assert "raise the limit" in caplog.text and f"may open {hard} files" in caplog.text
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
