"""`stamp-router serve` as one supervisor and its workers: real processes, loopback only."""

from __future__ import annotations

import http.client
import json
import os
import socket
import signal
import subprocess
import sys

import pytest

from router.process.wire import SHARE_BY_FORK
from tests.process.support import Load, pid_alive, worker_of_connections
from tests.support.router_proc import stamp
from tests.support.raw import read_responses
from tests.support.servers import wait_until

TOKEN = "s3cret-token"


def two_stamps(backends, workers=2, **extra) -> dict:
    eu1, eu2 = backends("eu-1", "eu-2")
    doc = {"routing": {"sources": ["header"]},
           "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
           "tenants": {"acme": "eu-1"}, "process": {"workers": workers}}
    doc.update(extra)
    return doc


def worker_pids(router) -> list[int]:
    status = router.admin_json("/readyz")["checks"]["workers"]
    return [w["pid"] for w in status["workers"] if w["state"] == "serving"]


def all_serving(router, count: int) -> bool:
    _, _, body = router.admin("GET", "/readyz")
    return json.loads(body)["checks"]["workers"]["serving"] == count


def with_token(router_proc, tmp_path, doc):
    (tmp_path / "token").write_text(TOKEN)
    doc["admin"] = {"token_file": str(tmp_path / "token")}
    return router_proc(doc)


def test_workers_serve_on_one_shared_port(router_proc, backends):
    router = router_proc(two_stamps(backends))
    pids = worker_pids(router)
    assert len(pids) == 2 and router.proc.pid not in pids
    status, headers, _ = router.request(headers={"X-Tenant-ID": "acme"})
    assert status == 200 and headers["x-stamp"] == "eu-1"


def test_connections_opened_at_once_spread_over_the_workers(router_proc, backends):
    # A listening socket per worker slot (SO_REUSEPORT): the kernel spreads connections by
    # their addresses. On one shared socket the worker that wakes first takes the burst.
    router = router_proc(two_stamps(backends))
    pids = worker_pids(router)
    conns = [socket.create_connection(("127.0.0.1", router.port), timeout=10) for _ in range(64)]
    try:
        for conn in conns:
            conn.sendall(b"GET /p HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
        for conn in conns:
            read_responses(conn, 1)            # accepted and served, by whichever worker
        owners = worker_of_connections(router.port, pids)
        held = [sum(1 for c in conns if owners.get(c.getsockname()[1]) == pid) for pid in pids]
    finally:
        for conn in conns:
            conn.close()
    assert sum(held) == 64
    # Binomial(64, 1/2): fewer than 12 on one side happens about once in 10^7 runs.
    assert min(held) >= 12, held


def test_kill_9_of_a_worker_under_load_fails_nothing_on_the_others(router_proc, backends):
    router = router_proc(two_stamps(backends))
    pids = worker_pids(router)
    with Load(router.port, {"X-Tenant-ID": "acme"}, clients=8) as load:
        wait_until(lambda: load.ok >= 200, 30, message="load running")
        owners = worker_of_connections(router.port, pids)
        victim = pids[0]
        assert victim in owners.values() and pids[1] in owners.values(), "both workers hold connections"
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: all_serving(router, 2) and victim not in worker_pids(router), 30,
                   message="the killed worker replaced")
        after = load.ok
        wait_until(lambda: load.ok >= after + 200, 30, message="load continuing after the kill")
    failed_ports = {port for port, _ in load.failures}
    # Only connections the killed worker held may have failed (a request in flight on it).
    assert all(owners.get(port) == victim for port in failed_ports), (load.failures, owners)
    assert load.refused == 0
    assert router.metric("stamp_router_worker_restarts_total", worker="0") == 1


def test_a_pin_push_is_answered_once_every_worker_serves_it(router_proc, backends, tmp_path):
    router = with_token(router_proc, tmp_path, two_stamps(backends))
    for round_, target in enumerate(("eu-2", "eu-1", "eu-2")):
        status, _, body = router.admin("PUT", "/tenants/acme", body=target.encode(),
                                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, body
        # Each request on a fresh connection: whichever worker accepts it serves the pin.
        for _ in range(20):
            status, headers, _ = router.request(headers={"X-Tenant-ID": "acme", "Connection": "close"})
            assert (status, headers["x-stamp"]) == (200, target), round_
    # Every worker applied each edit itself and arrived at the supervisor's digest: none
    # was found out of step and replaced.
    assert router.metric("stamp_router_worker_restarts_total", worker="0") == 0
    assert router.metric("stamp_router_worker_restarts_total", worker="1") == 0


def test_a_full_reload_with_a_small_table_reaches_the_workers_serving(router_proc, backends):
    router = router_proc(two_stamps(backends))
    before = set(worker_pids(router))
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        assert stamp_on(sock) == "eu-1"
        router.write_config({**router.doc, "tenants": {"acme": "eu-2"}})
        wait_until(lambda: stamp_on(sock) == "eu-2", 20, message="the reload served on the open connection")
    assert set(worker_pids(router)) == before


def test_a_full_reload_of_a_large_table_starts_a_new_generation(router_proc, backends, tmp_path):
    pins = {f"t{i}": "eu-1" for i in range(SHARE_BY_FORK)}
    (tmp_path / "tenants.json").write_text(json.dumps(pins))
    router = router_proc({**two_stamps(backends), "tenants": {}, "tenants_file": str(tmp_path / "tenants.json")})
    before = set(worker_pids(router))
    version = router.admin_json("/config")["version"]
    pins["acme"] = "eu-2"
    (tmp_path / "tenants.json").write_text(json.dumps(pins))
    # The config served changes once the new generation accepts and the old one no longer
    # does (a new worker accepts as soon as it is ready, before its siblings: a request
    # served the new pin says only that the reload is under way).
    wait_until(lambda: router.admin_json("/config")["version"] != version, 60, message="the reload applied")
    for _ in range(20):       # fresh connections: only the new generation accepts them now
        assert router.request(headers={"X-Tenant-ID": "acme", "Connection": "close"})[1]["x-stamp"] == "eu-2"
    assert router.metric("stamp_router_workers_generation") >= 2
    after = set(worker_pids(router))
    assert len(after) == 2 and not before & after
    wait_until(lambda: not any(pid_alive(p) for p in before), 30, message="the old generation gone")
    # Then the table is rebuilt to stay shared as the workers serve, and the workers are
    # forked again from it (router.process.share): the same pins, served throughout.
    wait_until(lambda: "workers forked again from the rebuilt table" in router.stderr(), 60,
               message="the workers forked again")
    assert router.metric("stamp_router_workers_generation") == 3
    wait_until(lambda: all_serving(router, 2), 30, message="the third generation serving")
    for _ in range(5):
        assert router.request(headers={"X-Tenant-ID": "acme", "Connection": "close"})[1]["x-stamp"] == "eu-2"
    assert router.request(headers={"X-Tenant-ID": "t7", "Connection": "close"})[1]["x-stamp"] == "eu-1"


def stamp_on(sock) -> str:
    sock.sendall(b"GET /p HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
    head = read_responses(sock, 1)[0]
    return next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                if line.lower().startswith(b"x-stamp:"))


def test_killing_the_supervisor_leaves_no_process_behind(router_proc, backends):
    router = router_proc(two_stamps(backends))
    pids = worker_pids(router)
    router.proc.send_signal(signal.SIGKILL)
    router.proc.wait(10)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 20, message="workers gone with the supervisor")
    # And nothing accepts on the port any more.
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", router.port, timeout=2).connect()


def test_sigterm_drains_workers_and_supervisor(router_proc, backends):
    router = router_proc(two_stamps(backends))
    pids = worker_pids(router)
    assert router.stop() == 0
    assert not any(pid_alive(p) for p in pids)


def test_a_worker_that_keeps_dying_is_shown(router_proc, backends):
    router = router_proc(two_stamps(backends))
    for n in range(3):
        pid = next(w["pid"] for w in router.admin_json("/readyz")["checks"]["workers"]["workers"]
                   if w["worker"] == 0)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: next(w for w in _workers(router) if w["worker"] == 0)["pid"] not in (None, pid), 60,
                   message=f"restart {n + 1}")
    slot = next(w for w in _workers(router) if w["worker"] == 0)
    assert slot["restarts"] == 3 and slot["crashes_recent"] == 3
    assert slot["last_exit"] == "was killed by SIGKILL"
    status, _, body = router.admin("GET", "/readyz")
    assert status == 503 and b'"crash_looping": [\n        0\n      ]' in body
    assert router.metric("stamp_router_worker_restarts_total", worker="0") == 3
    # The other worker never stopped serving.
    assert router.request(headers={"X-Tenant-ID": "acme"})[0] == 200


def _workers(router) -> list[dict]:
    _, _, body = router.admin("GET", "/readyz")
    return json.loads(body)["checks"]["workers"]["workers"]


def test_metrics_sum_the_workers(router_proc, backends):
    router = router_proc(two_stamps(backends))
    for _ in range(30):
        assert router.request(headers={"X-Tenant-ID": "acme", "Connection": "close"})[0] == 200
    assert router.metric("stamp_router_requests_total", stamp="eu-1", code="2xx") == 30
    assert router.metric("stamp_router_worker_up", worker="1") == 1


@pytest.mark.parametrize("value, message", [
    (0, "process.workers"), (-2, "process.workers"), (1.5, "process.workers"), ("two", "process.workers"),
    (True, "process.workers"),
])
def test_bad_worker_counts_are_refused_with_their_path(tmp_path, value, message):
    from tests.support.router_proc import to_toml
    path = tmp_path / "router.toml"
    path.write_text(to_toml({"process": {"workers": value}, "routing": {"sources": ["header"]},
                             "stamps": [stamp("eu-1", ["127.0.0.1:9"])]}))
    out = subprocess.run([sys.executable, "-m", "router", "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert message in out.stderr and "whole number >= 1" in out.stderr


def test_more_workers_than_cpus_is_allowed_with_a_warning(router_proc, backends):
    count = len(os.sched_getaffinity(0)) + 1
    router = router_proc(two_stamps(backends, workers=count))
    assert len(worker_pids(router)) == count
    assert f"process.workers is {count}, more than the" in router.stderr()


RATE = 20.0
BURST = 4


def admitted_over(router, seconds: float, fresh: bool) -> tuple[int, float]:
    """Requests of acme answered 200 while sending as fast as one client can for `seconds`
    (one keep-alive connection, or a fresh connection per request), and the time taken."""
    import time
    ok = 0
    conn = None
    started = time.monotonic()
    for _ in range(100_000):                     # a bound; the clock ends it long before
        if time.monotonic() - started >= seconds:
            break
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
        conn.request("GET", "/r", headers={"X-Tenant-ID": "acme"})
        resp = conn.getresponse()
        resp.read()
        ok += resp.status == 200
        assert resp.status in (200, 429)
        if fresh:
            conn.close()
            conn = None
    return ok, time.monotonic() - started


@pytest.mark.parametrize("fresh", [False, True], ids=["one-connection", "connection-per-request"])
def test_a_tenant_gets_its_rate_from_the_router_as_a_whole(router_proc, backends, fresh):
    # A burst of 4 banks 200 ms of tokens: a client thread or worker not scheduled for a
    # moment on a loaded machine would otherwise lose the tokens of that moment (a bucket
    # of 1 holds one), which a single process loses as well.
    router = router_proc(two_stamps(backends, limits={"tenant_rate": RATE, "tenant_burst": BURST}))
    ok, elapsed = admitted_over(router, 4.0, fresh)
    # Its rate, within 10 %, over the whole run, plus at most the burst.
    assert RATE * elapsed * 0.9 <= ok <= RATE * elapsed * 1.1 + BURST, (ok, elapsed)
    assert router.metric("stamp_router_rate_limited_total", stamp="eu-1") > 0


def one_connection_per_worker(router, pids) -> dict[int, http.client.HTTPConnection]:
    """A keep-alive connection held by each worker (opened until every worker holds one)."""
    conns = []
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
        conn.connect()
        conns.append(conn)
        owners = worker_of_connections(router.port, pids)
        by_worker = {owners.get(c.sock.getsockname()[1]): c for c in conns}
        if set(pids) <= set(by_worker):
            for c in conns:
                if c not in by_worker.values():
                    c.close()
            return {pid: by_worker[pid] for pid in pids}
    raise AssertionError("a worker accepted none of 200 connections")


def served_by(conn) -> str:
    conn.request("GET", "/h", headers={"X-Tenant-ID": "acme"})
    resp = conn.getresponse()
    resp.read()
    return resp.getheader("X-Backend")


def test_a_health_transition_reaches_every_worker(router_proc, backends):
    a, b = backends("a", "b")
    doc = two_stamps(backends)
    doc["stamps"][0] = stamp("eu-1", [a.address, b.address],
                             health={"path": "/healthz", "interval": "100ms", "rise": 1, "fall": 1})
    router = router_proc(doc)
    conns = one_connection_per_worker(router, worker_pids(router))

    def a_routable() -> bool:
        backends_ = next(s for s in router.admin_json("/stamps")["stamps"] if s["name"] == "eu-1")["backends"]
        return next(x["healthy"] for x in backends_ if x["address"] == a.address)

    a.healthy = False
    wait_until(lambda: not a_routable(), 20, message="the supervisor sees a down")
    # Every worker stops sending to a (benchmarks/health_fanout.py measures how soon).
    for conn in conns.values():
        wait_until(lambda: all(served_by(conn) == "b" for _ in range(20)), 10, message="a worker avoiding a")
    a.healthy = True
    wait_until(a_routable, 20, message="the supervisor sees a up")
    for conn in conns.values():
        wait_until(lambda: served_by(conn) == "a", 10, message="a worker sending to a again")
    for conn in conns.values():
        conn.close()


def test_pushed_pins_folded_into_a_new_table_are_shared_again(router_proc, backends, tmp_path):
    # Past 10,000 pushed pins on a large table, a push folds them into a new table
    # (router.core.pin_table): every worker builds its own copy as it applies the push,
    # and the supervisor then forks them again from its rebuilt one (router.process.share).
    pins = {f"t{i}": "eu-1" for i in range(SHARE_BY_FORK)}
    (tmp_path / "tenants.json").write_text(json.dumps(pins))
    doc = {**two_stamps(backends), "tenants": {}, "tenants_file": str(tmp_path / "tenants.json")}
    router = with_token(router_proc, tmp_path, doc)
    generation = router.metric("stamp_router_workers_generation")
    batch = {f"n{i}": "eu-2" for i in range(10_001)}
    status, _, body = router.admin("PATCH", "/tenants", body=json.dumps(batch).encode(),
                                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 200, body
    for _ in range(10):       # answered once every worker serves it, as any push
        assert router.request(headers={"X-Tenant-ID": "n77", "Connection": "close"})[1]["x-stamp"] == "eu-2"
    wait_until(lambda: router.metric("stamp_router_workers_generation") == generation + 1, 60,
               message="the workers forked again from the folded table")
    wait_until(lambda: all_serving(router, 2), 30, message="the new generation serving")
    for tenant, stamp_ in (("n77", "eu-2"), ("t7", "eu-1")):
        assert router.request(headers={"X-Tenant-ID": tenant, "Connection": "close"})[1]["x-stamp"] == stamp_
    status, _, _ = router.admin("PUT", "/tenants/t7", body=b"eu-2", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200       # pushes go on on the new generation
    assert router.request(headers={"X-Tenant-ID": "t7", "Connection": "close"})[1]["x-stamp"] == "eu-2"
    assert router.metric("stamp_router_worker_restarts_total", worker="0") == 0
