"""Real servers for integration tests: backends on loopback, run in a background event loop.

The router under test is always a separate `stamp-router serve` process (RouterProcess);
the backends it proxies to run here, in a thread with its own event loop, so a test can
look at what they received.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def eventually(condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds (a deadline, not a wait)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class BackgroundLoop:
    """An asyncio loop in a daemon thread; `run(coro)` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Backend:
    """An aiohttp backend that records what it received."""

    name: str
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    runner: web.AppRunner | None = None
    healthy: bool = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hits(self, path_prefix: str = "/") -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(path_prefix) and r["path"] != "/healthz"]


def build_backend_app(backend: Backend) -> web.Application:
    async def record(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        backend.requests.append({"method": request.method, "path": request.path_qs, "peer": peer,
                                 "headers": dict(request.headers),
                                 "header_list": list(request.headers.items())})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok", status=200 if backend.healthy else 503)

    async def echo(request: web.Request) -> web.Response:
        await record(request)
        body = await request.read()
        return web.json_response({"stamp": backend.name, "method": request.method, "path": request.path_qs,
                                  "headers": dict(request.headers), "body_len": len(body)},
                                 headers={"X-Backend": backend.name})

    async def upload(request: web.Request) -> web.Response:
        await record(request)
        h, n = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        return web.json_response({"bytes": n, "sha256": h.hexdigest(), "stamp": backend.name})

    async def download(request: web.Request) -> web.StreamResponse:
        await record(request)
        total = int(request.query.get("bytes", "0"))
        chunked = request.query.get("chunked") == "1"
        resp = web.StreamResponse(headers={"X-Backend": backend.name})
        if not chunked:
            resp.content_length = total
        await resp.prepare(request)
        block = bytes(range(256)) * 256  # 64 KiB, a known pattern
        sent = 0
        while sent < total:
            n = min(len(block), total - sent)
            await resp.write(block[:n])
            sent += n
        await resp.write_eof()
        return resp

    async def status(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text="" if code in (204, 304) else f"status {code}")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.Response(text="slow")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        await record(request)
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{backend.name}:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app = web.Application(client_max_size=1024**3)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def start_backend(backend: Backend) -> Backend:
    backend.runner = web.AppRunner(build_backend_app(backend), access_log=None, handle_signals=False)
    await backend.runner.setup()
    site = web.TCPSite(backend.runner, "127.0.0.1", backend.port or 0, reuse_address=True)
    await site.start()
    backend.port = backend.runner.addresses[0][1]
    return backend


async def stop_backend(backend: Backend) -> None:
    if backend.runner is not None:
        await backend.runner.cleanup()
        backend.runner = None


class SinkServer:
    """A raw TCP server that counts every byte it receives and answers a fixed 200.

    Used to prove that a refused request sent nothing at all upstream: a malformed
    request would never reach an HTTP framework's handler, but it would reach this.
    """

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> SinkServer:
        sink = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                sink.connections += 1
                self.transport = transport

            def data_received(self, data):
                sink.received += data
                if b"\r\n\r\n" in data:
                    self.transport.write(SinkServer.RESPONSE)

        self.server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
