"""Admin API routes: health, readiness, metrics, config, stamps, route explanations.

Write endpoints (PUT /config, PUT/DELETE /tenants/{id}, PATCH /tenants) are added by
router.control, behind the bearer token of admin.token_file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.core import Facts, decide

if TYPE_CHECKING:
    from router.server import Router

ROUTER_KEY: web.AppKey["Router"] = web.AppKey("router")


def json_response(data, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", status=status,
                        content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    checks = router.readiness()
    ok = all(c["ok"] for c in checks.values())
    return json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    return web.Response(body=generate_latest(router.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_config(request: web.Request) -> web.Response:
    return json_response(request.app[ROUTER_KEY].config_info())


async def get_stamps(request: web.Request) -> web.Response:
    router = request.app[ROUTER_KEY]
    snap = router.state.snapshot
    return json_response({"version": snap.version, "stamps": router.health.stamp_status(snap)})


async def get_route(request: web.Request) -> web.Response:
    """Explain the decision the router would make now, with live health."""
    router = request.app[ROUTER_KEY]
    q = request.query
    if not any(k in q for k in ("tenant", "host", "token", "country")):
        return json_response({"error": "give tenant, host, token or country as a query parameter"}, status=400)
    snap, _ = router.state.current
    facts = Facts.of(method=q.get("method", "GET"), host=q.get("host"), tenant=q.get("tenant"),
                     token=q.get("token"), country=q.get("country"), client=q.get("client"))
    decision = decide(facts, snap, router.health, time.time(), explain=True)
    return json_response(decision.as_dict())


def build_app(router: Router) -> web.Application:
    app = web.Application(client_max_size=256 * 1024**2)
    app[ROUTER_KEY] = router
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config", get_config)
    app.router.add_get("/stamps", get_stamps)
    app.router.add_get("/route", get_route)
    return app
