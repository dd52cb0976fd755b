"""Process lifecycle: SIGTERM drains in-flight requests and exits 0; the connection limit holds."""

import json
import signal
import socket
import threading

from tests.support.router_proc import stamp
from tests.support.servers import wait_until


def test_sigterm_finishes_in_flight_requests_then_exits_0(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"routing": {"sources": ["header"]}, "timeouts": {"drain": "10s"},
                          "stamps": [stamp("eu-1", [eu1.address])]})
    result = {}

    def slow():
        result["response"] = router.request("GET", "/slow?s=1.5", headers={"X-Tenant-ID": "acme"}, timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: eu1.hits("/slow"), message="slow request reached the backend")
    router.proc.send_signal(signal.SIGTERM)

    def unready():
        status, _, body = router.admin("GET", "/readyz")
        return status == 503 and json.loads(body)["checks"]["serving"]["ok"] is False
    wait_until(unready, message="/readyz to report the drain")
    t.join(20)
    status, headers, body = result["response"]
    assert status == 200 and body == b"slow"
    assert router.proc.wait(20) == 0
    assert "draining" in router.stderr()


def test_connection_limit(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"listen": {"max_connections": 2}, "routing": {"sources": ["header"]},
                          "stamps": [stamp("eu-1", [eu1.address])]})
    held = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(2)]
    try:
        wait_until(lambda: router.metric("stamp_router_client_connections") == 2, message="two connections open")
        extra = socket.create_connection(("127.0.0.1", router.port), timeout=10)
        try:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
            data = extra.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b"", "a connection over listen.max_connections must be closed unanswered"
        assert router.metric("stamp_router_connections_refused_total") == 1
    finally:
        for s in held:
            s.close()


def test_grace_keeps_serving_while_readyz_says_unready(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"routing": {"sources": ["header"]}, "timeouts": {"grace": "3s", "drain": "5s"},
                          "stamps": [stamp("eu-1", [eu1.address])]})
    router.proc.send_signal(signal.SIGTERM)

    def unready():
        status, _, body = router.admin("GET", "/readyz")
        return status == 503 and json.loads(body)["checks"]["serving"]["ok"] is False
    wait_until(unready, message="/readyz to turn unready on SIGTERM")
    # Within the grace period a new connection is still accepted and served.
    status, headers, _ = router.request("GET", "/during-grace", headers={"X-Tenant-ID": "acme"})
    assert status == 200 and headers["x-stamp"] == "eu-1"
    assert router.proc.wait(30) == 0

