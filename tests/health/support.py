"""Shared by the health tests: fast probe settings, deadlines derived from them, /stamps
look-ups and a bounded keep-alive load generator."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.servers import wait_until

# Short intervals keep the suite fast. The timeout is long on purpose: the test backends
# live in the pytest process, whose garbage collector has paused it for 0.3 s late in a
# full run, and two healthy probes timing out in a row would take a live backend down.
# No test here detects a dead backend by timeout (a killed one refuses the connect).
FAST = {"interval": 0.2, "timeout": 1.0, "rise": 2, "fall": 2}
# Scheduling slack on top of a bound the issue states: process wake-ups, the test's own
# polling and /stamps round trips on a busy machine.
SLACK = 1.0


def down_deadline(health: dict) -> float:
    """The issue's bound for noticing a dead backend: fall x interval plus one timeout."""
    return health["fall"] * health["interval"] + health["timeout"] + SLACK


def up_deadline(health: dict) -> float:
    return health["rise"] * health["interval"] + health["timeout"] + SLACK


def stamp_status(router, name: str) -> dict:
    return next(s for s in router.admin_json("/stamps")["stamps"] if s["name"] == name)


def backend_status(router, stamp: str, address: str) -> dict:
    return next(b for b in stamp_status(router, stamp)["backends"] if b["address"] == address)


@dataclass
class Load:
    """Keep-alive GETs to the router from a few threads, until stopped or a bound is hit."""

    port: int
    headers: dict
    path: str = "/load"
    threads: int = 2
    max_requests: int = 20000
    max_seconds: float = 30.0
    ok: int = 0
    failures: list = field(default_factory=list)
    stamps: dict = field(default_factory=dict)     # X-Stamp value -> count
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.ok + len(self.failures)

    def start(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._workers:
            t.join(15)
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = None
        while not self._stop.is_set() and time.monotonic() < deadline and self.done < self.max_requests:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", self.path, headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                outcome = resp.status
                stamp = resp.getheader("X-Stamp")
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome, stamp = repr(exc), None
                conn.close()
                conn = None
            with self._lock:
                if outcome == 200:
                    self.ok += 1
                    self.stamps[stamp] = self.stamps.get(stamp, 0) + 1
                else:
                    self.failures.append(outcome)
        if conn is not None:
            conn.close()

    def wait_for(self, n: int, timeout: float = 15.0) -> None:
        """Until n more requests have completed (the load is really flowing)."""
        target = self.done + n
        wait_until(lambda: self.done >= target, timeout, message=f"{n} more requests through the router")


class RawBackend:
    """A loopback backend below HTTP frameworks, to fail at exact points of an exchange.

    mode "drop": read a whole request, close without answering.
    mode "truncate": answer a head promising 1000 bytes, send 10, close.
    mode "second-drop": answer the first request of each connection (keep-alive), then
    read the next one and close: a pooled connection that dies under the router.
    `requests` lists the request lines received, in order.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[str] = []
        self.server = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> RawBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _read_request(self, reader) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.requests.append(lines[0])
        length = next((int(ln.split(":", 1)[1]) for ln in lines if ln.lower().startswith("content-length:")), 0)
        if length:
            await reader.readexactly(length)
        return True

    async def _serve(self, reader, writer) -> None:
        try:
            await self._read_request(reader)
            if self.mode == "truncate":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
                await writer.drain()
            elif self.mode == "second-drop":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                await self._read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()


class ScriptedBackend:
    """An aiohttp backend whose answers a test sets: `health` is called for each probe
    (returns a status), `status` answers every other request. Counts both. With `hold`
    set, requests wait (counted in `held`) until the test calls release()."""

    def __init__(self, name: str, health=lambda n: 200, status: int = 200) -> None:
        self.name = name
        self.health = health
        self.status = status
        self.probes = 0
        self.served = 0
        self.hold = False
        self.held = 0
        self._released: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> ScriptedBackend:
        async def healthz(request):
            self.probes += 1
            return web.Response(status=self.health(self.probes))

        async def other(request):
            if self.hold:
                self.held += 1
                await self._released.wait()
            self.served += 1
            return web.json_response({"stamp": self.name}, status=self.status)

        self._released = asyncio.Event()

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_route("*", "/{tail:.*}", other)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    def release(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(self._released.set)

    async def stop(self) -> None:
        await self.runner.cleanup()
