"""GET /tenants/{id} (where a tenant is, what of it is in flight, its move),
POST /tenants/{id}/move (router.control.moves) and DELETE /tenants/{id}/tunnels; the
writes behind the admin token like every write.

    POST /tenants/{id}/move  {"to": STAMP, "strategy": "pause" | "read-only", "timeout": "30s",
                              "allow_cross_residency": false, "close_tunnels": false}
                             ?wait=false: answer 202 at once
    DELETE /tenants/{id}/tunnels   close the tenant's open WebSocket tunnels

    200  the move completed             409  already moving, a config change under way, same
    202  started (?wait=false)               stamp, another residency, a paused tenant
    422  bad body, unknown stamp        502  the move rolled back (the hook failed, a push failed)
    500  the move could not finish      504  the move rolled back at its deadline
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from router.admin.common import ADMIN_KEY, json_response
from router.admin.writes import authorize
from router.config.units import parse_duration
from router.config.validate import key_path
from router.core.move import Event, Move, MoveRefused, Outcome, Strategy
from router.core.tenant import is_valid_tenant

MOVE_KEYS = {"to", "strategy", "timeout", "allow_cross_residency", "close_tunnels"}
# Longest a move may be given: a paused tenant's requests are answered 503 after
# migration.hold_timeout anyway; a move of an hour is a mistake in the request.
MAX_MOVE_TIMEOUT = 3600.0


def _bad(path: str, message: str, status: int = 422) -> web.Response:
    return json_response({"error": message, "errors": [{"path": path, "message": message}]}, status=status)


async def get_tenant(request: web.Request) -> web.Response:
    admin = request.app[ADMIN_KEY]
    tenant = request.match_info["tenant"]
    if not is_valid_tenant(tenant):
        return _bad(key_path("tenants", tenant), "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -")
    snap = admin.snapshot()
    stamp = snap.pins.get(tenant)
    pin = None if stamp is None else {"stamp": stamp, "mode": snap.modes.get(tenant, "read-write")}
    if stamp is None and snap.unpinned == "hash" and snap.residency is None:
        stamp = snap.placement.lookup(tenant)
    moves = admin.control.moves
    move = moves.latest(tenant)
    out = {"tenant": tenant, "pin": pin, "stamp": stamp, "moving": moves.is_moving(tenant)}
    if admin.tenant_work is not None:
        out.update((await admin.tenant_work(tenant)).as_dict())
    if move is not None:
        out["move"] = move.as_dict()
        out["step"] = move.step.value if move.moving else None
    return json_response(out)


async def post_move(request: web.Request) -> web.Response:
    if (refusal := authorize(request)) is not None:
        return refusal
    tenant = request.match_info["tenant"]
    if not is_valid_tenant(tenant):
        return _bad(key_path("tenants", tenant), "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _bad("", f"cannot parse JSON: {exc}")
    if not isinstance(body, dict):
        return _bad("", 'the body is an object: {"to": STAMP, "strategy": "pause" | "read-only", "timeout": ...}')
    unknown = sorted(set(body) - MOVE_KEYS)
    if unknown:
        return _bad(unknown[0], f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(MOVE_KEYS))})")
    target = body.get("to")
    if not isinstance(target, str) or not target:
        return _bad("to", "the stamp to move the tenant to, by name")
    try:
        strategy = Strategy(body.get("strategy", "pause"))
    except ValueError:
        return _bad("strategy", f"strategy is \"pause\" or \"read-only\", not {body.get('strategy')!r}")
    timeout = body.get("timeout")
    if timeout is not None:
        try:
            timeout = parse_duration(timeout)
        except (TypeError, ValueError) as exc:
            return _bad("timeout", str(exc))
        if not 0 < timeout <= MAX_MOVE_TIMEOUT:
            return _bad("timeout", f"a move's timeout is more than 0 and at most {MAX_MOVE_TIMEOUT:.0f}s")
    flags = {}
    for flag in ("allow_cross_residency", "close_tunnels"):
        flags[flag] = body.get(flag, False)
        if not isinstance(flags[flag], bool):
            return _bad(flag, "true or false")
    moves = request.app[ADMIN_KEY].control.moves
    try:
        task = moves.start(tenant, target, strategy, timeout, cross_residency=flags["allow_cross_residency"],
                           close_tunnels=flags["close_tunnels"])
    except MoveRefused as exc:
        return _bad(exc.path, exc.message, exc.status)
    if request.query.get("wait", "").lower() in ("0", "false", "no"):
        return json_response(moves.latest(tenant).as_dict(), status=202)
    # Shielded: a client that stops waiting does not stop the move.
    move = await asyncio.shield(task)
    return json_response(move.as_dict(), status=_status(move))


async def delete_tunnels(request: web.Request) -> web.Response:
    """Close the tenant's open WebSocket tunnels on every worker (a fleet move's drain,
    `stamp-router migrate --close-tunnels`); answers what is in flight right after."""
    if (refusal := authorize(request)) is not None:
        return refusal
    tenant = request.match_info["tenant"]
    if not is_valid_tenant(tenant):
        return _bad(key_path("tenants", tenant), "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -")
    admin = request.app[ADMIN_KEY]
    return json_response((await admin.tenant_work(tenant, close_tunnels=True)).as_dict())


def _status(move: Move) -> int:
    if move.outcome is Outcome.COMPLETED:
        return 200
    if move.outcome is Outcome.ROLLED_BACK:
        timed_out = any(r.event is Event.TIMED_OUT for r in move.history)
        return 504 if timed_out else 502
    return 500


def install(app: web.Application) -> None:
    app.router.add_get("/tenants/{tenant}", get_tenant)
    app.router.add_post("/tenants/{tenant}/move", post_move)
    app.router.add_delete("/tenants/{tenant}/tunnels", delete_tunnels)
