"""Control-plane faults: one router polls a server that turns bad in every way in turn.
Each document or answer is refused within bounded time and memory, counted, and the
router serves on with its pins (the drop guard holds)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from tests.faults.support import pinned_doc, serves_acme
from tests.support.router_proc import RouterProcess
from tests.support.servers import Backend, start_backend, stop_backend, wait_until

GIB = 1024**3


class FaultyControlPlane:
    """Serves `good` until told to misbehave in one of MODES."""

    def __init__(self, good: dict) -> None:
        self.good, self.mode, self.port, self.runner = good, "good", 0, None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        if mode == "good":
            return web.json_response(self.good)
        if mode == "garbage":
            return web.Response(body=bytes(range(256)) * 64, content_type="application/octet-stream")
        if mode == "html":
            return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        if mode == "redirect_loop":
            raise web.HTTPFound(request.path_qs)
        if mode == "tls_error":         # https to this plain-HTTP port: the handshake fails
            raise web.HTTPFound(f"https://127.0.0.1:{self.port}/config")
        if mode == "many_bad_pins":
            # 100,000, not a million: a million is refused too, but took 59 s on the loaded
            # 2-core test machine (docs/operations.md), too long for every CI run.
            doc = {**self.good, "tenants": {f"t{i}": "no-such-stamp" for i in range(100_000)}}
            return web.json_response(doc)
        if mode == "million_bad_stamps":
            return web.json_response({**self.good, "stamps": [{"name": 1}] * 1_000_000})
        if mode == "drops_every_pin":
            return web.json_response({k: v for k, v in self.good.items() if k != "tenants"})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "ten_gib":
            resp.content_length = 10 * GIB
        elif mode == "slow":
            resp.content_length = 1000
        await resp.prepare(request)
        # Never-ending or 1 byte/s: bounded here too, at 60 s, in case the router is not.
        for _ in range(60 if mode == "slow" else 600):
            await resp.write(b" " * (1 if mode == "slow" else 64 * 1024 if mode == "ten_gib" else 16))
            await asyncio.sleep(1 if mode == "slow" else 0.1)
        return resp

    async def start(self) -> FaultyControlPlane:
        app = web.Application()
        app.router.add_get("/config", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self


# mode -> the counter its refusal shows in
FETCH_ERROR = ("stamp_router_control_polls_total", {"result": "error"})
REJECTED = ("stamp_router_config_reloads_total", {"source": "url", "result": "rejected"})
MODES = {"garbage": REJECTED, "html": REJECTED, "ten_gib": FETCH_ERROR, "slow": FETCH_ERROR,
         "never_ending": FETCH_ERROR, "redirect_loop": FETCH_ERROR, "tls_error": FETCH_ERROR,
         "many_bad_pins": REJECTED, "million_bad_stamps": REJECTED, "drops_every_pin": REJECTED}


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def plane(bg):
    backend = bg.run(start_backend(Backend("eu-1")))
    cp = bg.run(FaultyControlPlane(pinned_doc(backend.address)).start())
    yield cp
    bg.run(cp.runner.cleanup())
    bg.run(stop_backend(backend))


def test_every_control_plane_fault_is_refused_counted_and_served_through(tmp_path, plane):
    url = f"http://127.0.0.1:{plane.port}/config"
    doc = {"control": {"url": url, "interval": "0.2s", "max_backoff": "0.5s", "state_dir": "state"},
           "process": {"workers": 1}}
    proc = RouterProcess(tmp_path, doc).start(timeout=30)
    try:
        assert serves_acme(proc)
        took = {}
        for mode, (metric, labels) in MODES.items():
            before = proc.metric(metric, **labels)
            plane.mode = mode
            started = time.monotonic()
            # The poll timeout is 5 s at this interval: each refusal comes within it.
            wait_until(lambda: proc.metric(metric, **labels) > before, 60, message=f"{mode} refused and counted")
            took[mode] = round(time.monotonic() - started, 1)
            assert serves_acme(proc), mode
        status = proc.admin_json("/config")
        assert status["pins"] == 1 and status["lkg"] is False
        peak = peak_rss_mib(proc.proc.pid)
        print(f"\nrefused within (s): {json.dumps(took)}; router peak RSS {peak:.0f} MiB")
        assert peak < 1024, f"peak RSS {peak:.0f} MiB"
    finally:
        proc.stop()
