"""The admin API, every route of it: health, readiness, metrics, config, stamps, route
explanations here; the writes (PUT /config, PUT/DELETE /tenants/{id}, PATCH /tenants,
behind the bearer token of admin.token_file) in router.admin.writes.

It answers from the supervisor, for the whole router: what it needs is handed to it as
an `Admin` (the control plane, the health registry, the served snapshot, the metrics
registry), never the process wiring.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router.admin import tenants, writes
from router.admin.common import ADMIN_KEY, Admin, json_response
from router.core import Facts, decide


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    checks = request.app[ADMIN_KEY].readiness()
    ok = all(c["ok"] for c in checks.values())
    return json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    admin = request.app[ADMIN_KEY]
    await admin.refresh_counters()
    return web.Response(body=generate_latest(admin.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_config(request: web.Request) -> web.Response:
    return json_response(request.app[ADMIN_KEY].config_info())


async def get_stamps(request: web.Request) -> web.Response:
    admin = request.app[ADMIN_KEY]
    snap = admin.snapshot()
    return json_response({"version": snap.version, "stamps": admin.health.stamp_status(snap)})


async def get_route(request: web.Request) -> web.Response:
    """Explain the decision the router would make now, with live health."""
    admin = request.app[ADMIN_KEY]
    q = request.query
    if not any(k in q for k in ("tenant", "host", "token", "country", "client_cn")):
        return json_response({"error": "give tenant, host, token, country or client_cn as a query parameter"},
                             status=400)
    snap = admin.snapshot()
    facts = Facts.of(method=q.get("method", "GET"), host=q.get("host"), tenant=q.get("tenant"),
                     token=q.get("token"), country=q.get("country"), client=q.get("client"),
                     client_cn=q.get("client_cn"))
    decision = decide(facts, snap, admin.health, time.time(), explain=True)
    return json_response(decision.as_dict())


async def get_certs(request: web.Request) -> web.Response:
    """The certificates served on listen.https: names, key type, expiry; never a key."""
    return json_response(request.app[ADMIN_KEY].certs())


def build_app(admin: Admin) -> web.Application:
    app = web.Application(client_max_size=256 * 1024**2)
    app[ADMIN_KEY] = admin
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config", get_config)
    app.router.add_get("/stamps", get_stamps)
    app.router.add_get("/route", get_route)
    app.router.add_get("/certs", get_certs)
    writes.install(app)
    tenants.install(app)
    return app
