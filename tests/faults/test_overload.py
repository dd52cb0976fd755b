"""Memory overload (limits.max_memory): past the limit a worker stops accepting connections
and answers new requests 503 with Retry-After; under 90 % of it, it takes work again.

The limit is set a little above the worker's own resident memory, measured once it
serves; clients that send huge request heads (each held until it ends, with a large
limits.max_header_bytes) push it over. Nothing here depends on a machine's sizes."""

from __future__ import annotations

import json
import socket
import threading

from tests.support.raw import status_of
from tests.support.router_proc import stamp
from router.core.overload import STUCK_AFTER
from tests.support.servers import wait_until
from tests.tls.support import Pki, https_doc, https_get

MiB = 1024 * 1024
# How far over its measured size the worker is allowed, and how much each inflating
# client sends: one stays under the limit (so the second is still accepted), two are past it.
HEADROOM = 24 * MiB
INFLATE = 16 * MiB
PAD_LINE = b"X-Pad: " + b"a" * 65000 + b"\r\n"


def inflating_client(port: int) -> socket.socket:
    """A client that sends INFLATE bytes of request head and never ends it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\n")
    sock.sendall(PAD_LINE * (INFLATE // len(PAD_LINE)))
    return sock


def read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\n\r\n"


def test_over_max_memory_a_worker_sheds_and_recovers(backends, router_proc, tmp_path):
    (backend,) = backends("eu-1")
    pki = Pki(tmp_path / "pki")
    doc = {"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [backend.address])],
           "tenants": {"acme": "eu-1"},
           "limits": {"max_header_bytes": "64MiB"}, "timeouts": {"request_header": "60s"}}
    doc, https_port, kwargs = https_doc(doc, [pki.issue("site", "acme.example.com")])
    proc = router_proc(doc, **kwargs)
    resident = wait_until(lambda: proc.metric("stamp_router_worker_resident_memory_bytes", worker=0), 10,
                          message="the worker's resident memory in /metrics")
    digest = proc.admin_json("/config")["digest"]
    proc.write_config({**proc.doc, "limits": {**doc["limits"], "max_memory": int(resident) + HEADROOM}})
    wait_until(lambda: proc.admin_json("/config")["digest"] != digest, 15, message="the limit reloaded")

    early = socket.create_connection(("127.0.0.1", proc.port), timeout=10)   # accepted before the limit is hit
    wait_until(lambda: proc.metric("stamp_router_client_connections") >= 1, 10, message="the early client accepted")
    inflating = [inflating_client(proc.port) for _ in range(2)]
    try:
        wait_until(lambda: proc.metric("stamp_router_overload_shedding") == 1, 15, message="the worker shedding")
        assert "reached limits.max_memory" in proc.stderr()
        # Its only worker sheds: not ready, so that a load balancer sends elsewhere.
        status, _, data = proc.admin("GET", "/readyz")
        assert status == 503 and json.loads(data)["checks"]["memory"] == {"ok": False, "workers_shedding": 1}

        # A request on a connection already open: 503 with Retry-After, and the connection closes.
        early.sendall(REQUEST)
        answer = read_response(early, 10)
        assert status_of(answer) == 503, answer[:300]
        head, _, body = answer.partition(b"\r\n\r\n")
        head += b"\r\n"
        assert b"\r\nRetry-After: 5\r\n" in head and b"\r\nConnection: close\r\n" in head
        assert json.loads(body or read_response(early, 10))["kind"] == "overloaded"

        # A new connection waits in the listen queue: not answered while the worker sheds;
        # on the https listener, not even its handshake.
        late = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        late.sendall(REQUEST)
        tls_late: list = []
        tls_client = threading.Thread(target=lambda: tls_late.append(
            https_get(https_port, pki.client_context(), "acme.example.com", headers={"X-Tenant-ID": "acme"},
                      timeout=30)), daemon=True)
        tls_client.start()
        assert read_response(late, 1.0) == b""
        assert not tls_late
    finally:
        for sock in inflating:
            sock.close()
    # What the inflating clients held is given back; the queued connection is then served.
    wait_until(lambda: proc.metric("stamp_router_overload_shedding") == 0, 15, message="the worker recovered")
    answer = read_response(late, 10)
    assert status_of(answer) == 200, answer[:300]
    tls_client.join(20)
    assert tls_late and tls_late[0][0] == 200, tls_late
    assert "under" in proc.stderr().split("reached limits.max_memory", 1)[1]
    wait_until(lambda: proc.admin("GET", "/readyz")[0] == 200, 10, message="ready again")
    assert proc.metric("stamp_router_overload_entered_total") == 1
    assert proc.metric("stamp_router_overload_shed_requests_total") >= 1
    late.close()
    early.close()
    status, _, data = proc.request(headers={"X-Tenant-ID": "acme"})
    assert status == 200 and json.loads(data)["stamp"] == "eu-1"


def test_a_worker_that_cannot_get_under_the_limit_is_replaced(backends, router_proc):
    """A limit below what a worker needs at rest: it sheds, has nothing to shed, and after
    STUCK_AFTER seconds exits to be replaced (a leak or a heap it cannot give back ends
    the same way). Raising the limit again serves."""
    (backend,) = backends("eu-1")
    doc = {"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [backend.address])],
           "tenants": {"acme": "eu-1"}}
    proc = router_proc(doc)
    resident = wait_until(lambda: proc.metric("stamp_router_worker_resident_memory_bytes", worker=0), 10,
                          message="the worker's resident memory in /metrics")
    digest = proc.admin_json("/config")["digest"]
    proc.write_config({**proc.doc, "limits": {"max_memory": int(resident) // 2}})
    wait_until(lambda: proc.admin_json("/config")["digest"] != digest, 15, message="the limit reloaded")
    wait_until(lambda: proc.metric("stamp_router_worker_restarts_total", worker=0) >= 1, STUCK_AFTER + 10,
               message="the worker replaced")
    assert "no connection left to shed" in proc.stderr()
    assert "exited with 76" in proc.stderr()
    proc.write_config({**proc.doc, "limits": {}})
    wait_until(lambda: answers_200(proc), 20, message="serving again under no limit")


def answers_200(proc) -> bool:
    try:
        return proc.request(headers={"X-Tenant-ID": "acme"}, timeout=2)[0] == 200
    except OSError:
        return False            # a connection left in the queue of a worker being replaced
