"""Named deadlines: request head, idle keep-alive, upstream connect and upstream response."""

import json
import select
import socket

import pytest

from tests.support.raw import raw_request, read_responses, status_of
from tests.support.router_proc import stamp
from tests.support.servers import free_port


@pytest.fixture
def router(backends, router_proc):
    (eu1,) = backends("eu-1")
    return router_proc({
        "routing": {"sources": ["header"]},
        "timeouts": {"request_header": "500ms", "idle": "500ms", "upstream": "500ms", "connect": "500ms"},
        "stamps": [stamp("eu-1", [eu1.address])],
    })


def test_slow_request_head_gets_408_and_is_closed(router):
    response, closed = raw_request(router.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n", timeout=10)
    assert status_of(response) == 408
    assert closed


def test_silent_connection_is_closed_without_an_answer(router):
    response, closed = raw_request(router.port, b"", timeout=10)
    assert response == b"" and closed


def test_idle_keep_alive_connection_is_closed(router):
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
        assert status_of(read_responses(sock, 1)[0]) == 200
        sock.settimeout(10)
        assert sock.recv(1) == b"", "the router should close an idle keep-alive connection"


def test_upstream_response_timeout_is_504(router):
    status, headers, body = router.request("GET", "/slow?s=3", headers={"X-Tenant-ID": "acme"})
    assert status == 504
    assert json.loads(body)["kind"] == "upstream_timeout"
    assert headers["x-stamp"] == "eu-1"


def test_upstream_connect_refused_is_502(router_proc):
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [dead])]})
    status, _, body = router.request("GET", "/", headers={"X-Tenant-ID": "acme"})
    assert status == 502
    assert json.loads(body)["kind"] == "upstream_failure"
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1", backend=dead, kind="connect") == 1


def test_upstream_connect_timeout_is_504(router_proc):
    # A listener whose accept queue is full and never drained: the kernel drops further
    # SYNs, so a connect to it hangs until the router's connect deadline.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    select.select([], fillers, [], 2.0)  # the handshakes that fit the queue complete
    try:
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel accepted a connection beyond the backlog; cannot make a blackhole here")
        except (socket.timeout, OSError):
            pass
        finally:
            probe.close()
        router = router_proc({"routing": {"sources": ["header"]}, "timeouts": {"connect": "300ms"},
                              "stamps": [stamp("eu-1", [f"127.0.0.1:{port}"])]})
        status, _, body = router.request("GET", "/", headers={"X-Tenant-ID": "acme"})
        assert status == 504
        assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1",
                             backend=f"127.0.0.1:{port}", kind="timeout") == 1
    finally:
        for s in fillers:
            s.close()
        blackhole.close()
