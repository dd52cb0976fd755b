"""What the move tests share: two stamps that record the order writes reach them, a hook
the test can make slow, failing or hanging, and bounded client load of reads and writes."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.process.support import Load
from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import BackgroundLoop

TOKEN = "move-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Arrival:
    seq: int           # the order requests reached either stamp (one counter for both)
    stamp: str
    method: str
    tenant: str
    path: str


class Stamps:
    """Stamp backends in one event loop thread: a single counter orders every arrival."""

    def __init__(self, names: tuple[str, ...] = ("old", "new")) -> None:
        self.loop = BackgroundLoop()
        self.arrivals: list[Arrival] = []
        self._seq = itertools.count()
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}
        self.delay = 0.0                      # seconds each request takes
        for name in names:
            self.ports[name] = self.loop.run(self._start(name))
        self.hook = Hook()
        self.hook_port = self.loop.run(self._start_hook())

    async def _start(self, name: str) -> int:
        async def handle(request: web.Request) -> web.Response:
            # Recorded on arrival: the order stamps were reached in is what the test checks.
            self.arrivals.append(Arrival(next(self._seq), name, request.method,
                                         request.headers.get("X-Tenant-ID", ""), request.path_qs))
            await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(text=name, headers={"X-Backend": name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return await self._serve(app)

    async def _start_hook(self) -> int:
        app = web.Application()
        app.router.add_post("/hook", self.hook.handle)
        app.router.add_post("/moved", self.hook.moved)
        return await self._serve(app)

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        return runner.addresses[0][1]

    def backend(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.hook_port}/hook"

    def writes(self, tenant: str) -> list[Arrival]:
        return [a for a in list(self.arrivals) if a.tenant == tenant and a.method not in ("GET", "HEAD")]

    def close(self) -> None:
        self.loop.loop.call_soon_threadsafe(self.hook.unhang.set)
        for runner in self.runners:
            self.loop.run(runner.cleanup())
        self.loop.close()


@dataclass
class Hook:
    """The migration hook: answers after `delay` with `behaviour`."""

    delay: float = 0.0
    behaviour: str = "ok"          # ok | fail | hang | garbage | redirect
    calls: list[dict] = field(default_factory=list)
    unhang: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(await request.json())
        if self.behaviour == "hang":
            await self.unhang.wait()            # until the test ends (Stamps.close)
        await asyncio.sleep(self.delay)
        if self.behaviour == "fail":
            return web.json_response({"ok": False, "error": "copy failed"}, status=500)
        if self.behaviour == "garbage":
            return web.Response(text="<html>not json</html>")
        if self.behaviour == "redirect":
            raise web.HTTPFound("/moved")
        return web.json_response({"ok": True})

    async def moved(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


def router_doc(stamps: Stamps, tmp_path, tenant: str = "acme", *, workers: int = 1, migration: dict | None = None,
               **extra) -> dict:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    doc = {
        "admin": {"token_file": str(token_file)},
        "routing": {"sources": ["header"], "unpinned": "hash"},
        "process": {"workers": workers},
        "migration": {"hook_url": stamps.hook_url, "hold_timeout": "10s", **(migration or {})},
        "stamps": [stamp("old", [stamps.backend("old")]), stamp("new", [stamps.backend("new")])],
        "tenants": {tenant: "old"},
    }
    doc.update(extra)
    return doc


def move(router: RouterProcess, tenant: str, body: dict, query: str = "") -> tuple[int, dict]:
    status, _, data = router.admin("POST", f"/tenants/{tenant}/move{query}", json.dumps(body).encode(), AUTH)
    return status, json.loads(data)


def tenant_info(router: RouterProcess, tenant: str) -> dict:
    return router.admin_json(f"/tenants/{tenant}")


class Traffic(Load):
    """`clients` threads, each on its own keep-alive connection, alternating a write (POST)
    and a read for `tenant`, numbering its requests; every answer is recorded. Bounded:
    each sends at most `max_requests`, and all stop on stop()."""

    def __init__(self, port: int, tenant: str, clients: int = 4, max_requests: int = 5000,
                 timeout: float = 30.0) -> None:
        super().__init__(port, {"X-Tenant-ID": tenant}, clients, max_requests)
        self.timeout = timeout
        self.results: list[tuple[int, int, str, int, str, float]] = []   # client, n, method, status, stamp, seconds
        self.errors: list[str] = []
        self._clients = itertools.count()

    @property
    def count(self) -> int:
        return len(self.results)

    def failed(self) -> list:
        return [r for r in self.results if r[3] != 200] + self.errors

    def _run(self) -> None:
        client = next(self._clients)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        for n in range(self.max_requests):
            if self._stop.is_set():
                break
            method = "POST" if n % 2 == 0 else "GET"
            started = time.monotonic()
            try:
                conn.request(method, f"/c{client}/n{n}", body=b"x" * 10 if method == "POST" else None,
                             headers=self.headers)
                resp = conn.getresponse()
                resp.read()
                with self._lock:
                    self.results.append((client, n, method, resp.status, resp.getheader("X-Backend", ""),
                                         time.monotonic() - started))
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(f"client {client} request {n}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        conn.close()
