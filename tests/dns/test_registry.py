"""Reading the stamp registry: the router's GET /stamps, or a router config plus probes."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from router.dns.errors import RegistryError
from router.dns.registry import HttpRegistry, ProbeRegistry, parse_registry
from tests.dns.servers import free_port
from tests.dns.support import run, serve_app

# Exactly the document the router's admin API serves (the contract with the lead).
ROUTER_STAMPS = {
    "version": "demo-1",
    "stamps": [
        {"name": "eu-1", "region": "eu", "residency": "eu", "state": "active", "weight": 100,
         "public": ["203.0.113.10"], "failover": ["eu-2"], "healthy": True, "panic": False,
         "backends": [{"address": "10.1.0.10:8080", "healthy": True, "ejected_until": None,
                       "consecutive_failures": 0,
                       "last_probe": {"ok": True, "status": 200, "at": 1764133200.1, "error": None}}]},
        {"name": "eu-2", "region": "eu", "residency": "eu", "state": "offline", "weight": 50,
         "public": [], "failover": [], "healthy": True, "panic": False, "backends": []},
    ],
}


def test_the_routers_stamps_document_parses():
    reg = parse_registry(ROUTER_STAMPS, "http://r/stamps")
    assert reg.version == "demo-1"
    eu1, eu2 = reg.stamps
    assert (eu1.name, eu1.region, eu1.weight, eu1.public, eu1.dns_healthy) == ("eu-1", "eu", 100, ("203.0.113.10",), True)
    assert eu2.healthy and not eu2.dns_healthy     # offline is down for DNS, whatever the probes say


@pytest.mark.parametrize("doc, message", [
    ({"stamps": []}, "lists no stamps; changing nothing"),
    ({"version": "x"}, "stamps: Field required"),
    ({"stamps": [{"name": "a", "region": "eu", "weight": -1, "healthy": True}]}, "stamps[0].weight"),
    ({"stamps": [{"name": "a", "region": "eu", "weight": 1, "healthy": "yes please"}]}, "stamps[0].healthy"),
    ({"stamps": [dict(ROUTER_STAMPS["stamps"][0])] * 2}, "lists stamp 'eu-1' twice"),
    (["not", "an", "object"], "is not a stamp list"),
])
def test_a_bad_document_is_a_registry_error_naming_the_field(doc, message):
    with pytest.raises(RegistryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_registry(doc, "http://r/stamps")


def _app(handler) -> web.Application:
    app = web.Application()
    app.router.add_get("/stamps", handler)
    return app


async def _read(handler, timeout=2.0, released=None):
    async with serve_app(_app(handler)) as base:
        try:
            return await HttpRegistry(f"{base}/stamps", timeout).read()
        finally:
            if released is not None:    # before the server shuts down and waits for handlers
                released.set()


def test_http_registry_reads_the_stamps():
    async def ok(request):
        return web.json_response(ROUTER_STAMPS)

    assert [s.name for s in run(_read(ok)).stamps] == ["eu-1", "eu-2"]


def test_http_registry_failures_are_registry_errors():
    async def broken(request):
        return web.Response(status=503, text="starting")

    async def garbage(request):
        return web.Response(text="<html>", content_type="text/html")

    released = asyncio.Event()

    async def hangs(request):
        await released.wait()       # answers only once the reader has given up
        return web.json_response(ROUTER_STAMPS)

    with pytest.raises(RegistryError, match="answered HTTP 503"):
        run(_read(broken))
    with pytest.raises(RegistryError, match="not JSON"):
        run(_read(garbage))
    with pytest.raises(RegistryError, match="did not answer within 0.3s"):
        run(_read(hangs, timeout=0.3, released=released))
    with pytest.raises(RegistryError, match=f"cannot read registry http://127.0.0.1:{(port := free_port())}/stamps"):
        run(HttpRegistry(f"http://127.0.0.1:{port}/stamps", 1.0).read())


ROUTER_TOML = """
[routing]
sources = ["header"]

[[stamps]]
name = "eu-1"
region = "eu"
backends = ["{up}", "{dead}"]
public = ["203.0.113.10"]
health = {{ path = "/healthz", timeout = "1s" }}

[[stamps]]
name = "eu-2"
region = "eu"
backends = ["{sick}"]
public = ["203.0.113.20"]

[[stamps]]
name = "eu-3"
region = "eu"
backends = ["{dead}"]
health = {{ enabled = false }}
"""


def test_probe_registry_probes_each_stamps_backends(tmp_path):
    async def healthy(request):
        return web.Response(text="ok")

    async def sick(request):
        return web.Response(status=503)

    async def main():
        async with serve_app(_health_app(healthy)) as up, serve_app(_health_app(sick)) as down:
            path = tmp_path / "router.toml"
            path.write_text(ROUTER_TOML.format(up=up.removeprefix("http://"), sick=down.removeprefix("http://"),
                                               dead=f"127.0.0.1:{free_port()}"))
            return await ProbeRegistry(str(path), 2.0).read()

    reg = run(main())
    assert {s.name: s.healthy for s in reg.stamps} == {"eu-1": True, "eu-2": False, "eu-3": True}
    assert reg.stamps[0].public == ("203.0.113.10",)


def test_probe_registry_with_a_broken_router_config_is_a_registry_error(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text("[[stamps]]\nname = 'x'\n")
    with pytest.raises(RegistryError, match="router config .* does not load: stamps\\[0\\]"):
        run(ProbeRegistry(str(path), 1.0).read())


def _health_app(handler) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", handler)
    return app
