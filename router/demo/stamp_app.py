"""A demo stamp: answers with its name, the tenant the router resolved, and a per-tenant
visit counter kept in the stamp's own SQLite database (each stamp owns its data)."""

from __future__ import annotations

import sqlite3

import orjson
from aiohttp import WSMsgType, web

STAMP_KEY: web.AppKey[str] = web.AppKey("stamp")
DB_KEY: web.AppKey[sqlite3.Connection] = web.AppKey("db")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    stamp = request.app[STAMP_KEY]
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(f"{stamp}: {msg.data}")
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def tenant_page(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    tenant = request.headers.get("X-Tenant-ID", "")
    with db:
        db.execute("INSERT INTO visits(tenant, n) VALUES (?, 1) "
                   "ON CONFLICT(tenant) DO UPDATE SET n = n + 1", (tenant,))
        (count,) = db.execute("SELECT n FROM visits WHERE tenant = ?", (tenant,)).fetchone()
    body = {"stamp": request.app[STAMP_KEY], "tenant": tenant or None, "visits": count,
            "method": request.method, "path": request.path_qs,
            "request_id": request.headers.get("X-Request-ID")}
    return web.Response(body=orjson.dumps(body) + b"\n", content_type="application/json")


def build_stamp_app(name: str, db_path: str) -> web.Application:
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE IF NOT EXISTS visits (tenant TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    db.commit()
    app = web.Application()
    app[STAMP_KEY] = name
    app[DB_KEY] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", tenant_page)

    async def close_db(app: web.Application) -> None:
        app[DB_KEY].close()
    app.on_cleanup.append(close_db)
    return app
