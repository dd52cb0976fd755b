"""Admin write endpoints: PUT /config, POST /config/reload, PUT and DELETE /tenants/{id},
PATCH /tenants.

Every write needs `Authorization: Bearer <token>` with the token held in admin.token_file
(re-read per request, so it can be rotated without a restart). Without a token file
writes are refused (403): an admin port reachable by a neighbour must not be an open
door because nobody set a token.

    200  applied, or unchanged            409  refused by the drop guard (add ?force=true)
    401  no or wrong token                413  body over the admin API's size limit
    403  writes disabled (no token file)  422  invalid: every error with its path
    404  DELETE of a tenant without a pin 503  a new router is taking over (retry)
"""

from __future__ import annotations

import hmac
import orjson
from aiohttp import web

from router.admin.common import ADMIN_KEY, json_response
from router.control.etcd_source import CONFLICT, UNAVAILABLE
from router.control.pins import batch_op, journal_pin, pin_op
from router.control.plane import ControlPlane
from router.control.reloader import INVALID, UNSAFE, ReloadResult
from router.control.startup import read_token

STATUS = {INVALID: 422, UNSAFE: 409, CONFLICT: 409, UNAVAILABLE: 503}


def _control(request: web.Request) -> ControlPlane:
    return request.app[ADMIN_KEY].control


def authorize(request: web.Request) -> web.Response | None:
    """None if the request carries the admin token; else the refusal to answer with."""
    control = _control(request)
    if control.paused:
        resp = json_response({"error": "a new router is taking over: this one takes no more changes; "
                                       "send the change again in a moment (to the new router)"}, status=503)
        resp.headers["Retry-After"] = "1"
        return resp
    token_file = control.bootstrap.admin.token_file
    if not token_file:
        return json_response({"error": "admin writes are disabled: set admin.token_file to a file "
                                       "holding the bearer token"}, status=403)
    token = read_token(control.bootstrap, token_file)
    if token is None:
        return json_response({"error": f"admin writes are disabled: the token file {token_file} "
                                       "cannot be read or is empty"}, status=403)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: how long the comparison takes says nothing about the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        resp = json_response({"error": "a valid admin bearer token is required"}, status=401)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="stamp-router admin"'
        return resp
    return None


def _forced(request: web.Request) -> bool:
    return request.query.get("force", "").lower() in ("1", "true", "yes")


def answer(result: ReloadResult) -> web.Response:
    body = result.as_dict()
    if result.outcome == INVALID:
        body["error"] = "invalid config; nothing changed"
    elif result.outcome == UNSAFE:
        body["error"] = "refused by the drop guard; nothing changed (repeat with ?force=true to apply it)"
    elif result.errors and result.outcome in (CONFLICT, UNAVAILABLE):
        body["error"] = result.errors[0][1]
    return json_response(body, status=STATUS.get(result.outcome, 200))


async def put_config(request: web.Request) -> web.Response:
    if (refusal := authorize(request)) is not None:
        return refusal
    body = await request.read()
    result = await _control(request).push_config(body, request.headers.get("Content-Type"), force=_forced(request))
    return answer(result)


async def post_reload(request: web.Request) -> web.Response:
    """Read the configured source now (the file, or the control plane without If-None-Match)."""
    if (refusal := authorize(request)) is not None:
        return refusal
    return answer(await _control(request).reload_source(force=_forced(request)))


async def _pin_body(request: web.Request) -> tuple[str | None, str | None] | web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        body = raw.decode("utf-8", "replace").strip()   # a bare stamp name as text/plain
    if isinstance(body, str):
        return body, None
    if isinstance(body, dict) and isinstance(body.get("stamp"), str) and set(body) <= {"stamp", "mode"}:
        return body["stamp"], body.get("mode")
    return json_response({"error": 'the body is a stamp name, or {"stamp": "NAME", "mode": "read-write" | '
                                   '"read-only" | "paused"}'}, status=422)


async def put_tenant(request: web.Request) -> web.Response:
    if (refusal := authorize(request)) is not None:
        return refusal
    parsed = await _pin_body(request)
    if isinstance(parsed, web.Response):
        return parsed
    stamp, mode = parsed
    op = pin_op(request.match_info["tenant"], stamp, mode)
    return answer(await _control(request).edit_pin(op))


async def delete_tenant(request: web.Request) -> web.Response:
    if (refusal := authorize(request)) is not None:
        return refusal
    control = _control(request)
    tenant = request.match_info["tenant"]
    if tenant not in control.reloader.current.pins:
        return json_response({"error": f"tenant {tenant!r} has no pin"}, status=404)
    return answer(await control.edit_pin(pin_op(tenant, None)))


async def patch_tenants(request: web.Request) -> web.Response:
    """Many pins as one edit: a JSON object of tenant -> stamp name, {"stamp", "mode"}, or
    null to remove the pin (JSON merge patch). All apply, or none."""
    if (refusal := authorize(request)) is not None:
        return refusal
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return answer(ReloadResult(INVALID, "pin", errors=[("", f"cannot parse JSON: {exc}")]))
    if not isinstance(body, dict):
        return answer(ReloadResult(INVALID, "pin", errors=[("", "the body is an object of tenant -> pin")]))
    pins = {tenant: journal_pin(value) for tenant, value in body.items()}
    return answer(await _control(request).edit_pin(batch_op(pins), force=_forced(request)))


def install(app: web.Application) -> None:
    app.router.add_put("/config", put_config)
    app.router.add_post("/config/reload", post_reload)
    app.router.add_put("/tenants/{tenant}", put_tenant)
    app.router.add_delete("/tenants/{tenant}", delete_tenant)
    app.router.add_patch("/tenants", patch_tenants)
