"""Carrying out the decision within a stamp: backend choice, connect retry, stale pooled connections."""

import asyncio
import json
import threading

import pytest

from tests.support.router_proc import stamp
from tests.support.servers import free_port, wait_until


def test_least_outstanding_requests(backends, router_proc):
    a, b = backends("a", "b")
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [a.address, b.address])]})
    slow = threading.Thread(target=router.request, args=("GET", "/slow?s=3"),
                            kwargs={"headers": {"X-Tenant-ID": "acme"}, "timeout": 20})
    slow.start()
    busy = wait_until(lambda: next((x for x in (a, b) if x.hits("/slow")), None), message="slow request placed")
    other = b if busy is a else a
    for i in range(6):
        status, headers, body = router.request("GET", f"/q{i}", headers={"X-Tenant-ID": "acme"})
        assert status == 200
        assert json.loads(body)["stamp"] == other.name, "a backend with a request outstanding was chosen"
    slow.join()


def test_connect_failure_is_retried_once_on_another_backend(backends, router_proc):
    (live,) = backends("live")
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc({"routing": {"sources": ["header"]},
                          "stamps": [stamp("eu-1", [dead, live.address])]})
    for i in range(6):
        status, _, body = router.request("GET", f"/r{i}", headers={"X-Tenant-ID": "acme"})
        assert status == 200, body
    assert len(live.hits()) == 6
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1", backend=dead, kind="connect") >= 1
    assert router.metric("stamp_router_retries_total", stamp="eu-1") >= 1


class CloseAfterOneServer:
    """Answers the first request on each connection, then closes it when the next one
    arrives, unanswered: the race a pooled keep-alive connection loses when the backend
    closes it just as the router sends on it."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = []

    async def start(self):
        outer = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                outer.connections += 1
                self.transport = transport
                self.served = 0
                self.buf = b""

            def data_received(self, data):
                self.buf += data
                while b"\r\n\r\n" in self.buf:
                    head, _, rest = self.buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    if len(rest) < length:
                        return
                    self.buf = rest[length:]
                    if self.served:
                        self.transport.close()
                        return
                    self.served += 1
                    outer.requests.append(head.split(b"\r\n")[0] + b" body=" + rest[:length])
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        self.server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


@pytest.mark.parametrize("method,body", [("GET", None), ("PUT", b"payload")])
def test_stale_pooled_connection_is_resent_on_a_fresh_one(bg, router_proc, method, body):
    server = bg.run(CloseAfterOneServer().start())
    router = router_proc({"routing": {"sources": ["header"]},
                          "stamps": [stamp("eu-1", [f"127.0.0.1:{server.port}"])]})
    for i in range(4):
        status, _, data = router.request(method, f"/s{i}", headers={"X-Tenant-ID": "acme"}, body=body)
        assert (status, data) == (200, b"ok")
    assert len(server.requests) == 4
    if body:
        assert all(r.endswith(b"body=payload") for r in server.requests)
    bg.loop.call_soon_threadsafe(server.server.close)   # the server belongs to the loop thread


def test_complete_post_on_a_dead_pooled_connection_is_not_replayed(bg, router_proc):
    """The backend may have acted on a POST it read before dying: no silent second copy."""
    server = bg.run(CloseAfterOneServer().start())
    router = router_proc({"routing": {"sources": ["header"]},
                          "stamps": [stamp("eu-1", [f"127.0.0.1:{server.port}"])]})
    assert router.request("POST", "/first", headers={"X-Tenant-ID": "acme"}, body=b"one")[0] == 200
    status, _, body = router.request("POST", "/second", headers={"X-Tenant-ID": "acme"}, body=b"two")
    assert status == 502 and json.loads(body)["kind"] == "upstream_failure"
    assert len(server.requests) == 1
    bg.loop.call_soon_threadsafe(server.server.close)   # the server belongs to the loop thread


class GarbageServer:
    """Answers every request with bytes that are not HTTP."""

    async def start(self):
        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

        self.server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


def test_a_backend_that_does_not_speak_http_is_a_502_counted_as_protocol(bg, router_proc):
    server = bg.run(GarbageServer().start())
    address = f"127.0.0.1:{server.port}"
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [address])]})
    status, _, body = router.request("GET", "/", headers={"X-Tenant-ID": "acme"})
    assert status == 502
    assert b"SSH" not in body, "nothing the backend sent may reach the client"
    assert "invalid response from backend" in json.loads(body)["error"]
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1", backend=address, kind="protocol") == 1
    assert router.metric("stamp_router_requests_total", stamp="eu-1", code="5xx") == 1
    bg.loop.call_soon_threadsafe(server.server.close)   # the server belongs to the loop thread
