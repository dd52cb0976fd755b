"""A local JWKS endpoint (aiohttp) whose answer a test can change: keys, status, headers."""

from __future__ import annotations

from aiohttp import web

from tests.jwt.support import jwks


class JwksServer:
    def __init__(self, *jwk_list: dict) -> None:
        self.body = jwks(*jwk_list)
        self.status = 200
        self.headers: dict[str, str] = {}
        self.etag: str | None = None       # when set, If-None-Match with it gets a 304
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    def publish(self, *jwk_list: dict, **headers: str) -> None:
        self.body = jwks(*jwk_list)
        self.status = 200
        self.headers = headers

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        headers = dict(self.headers)
        if self.etag is not None:
            headers["ETag"] = self.etag
            if request.headers.get("If-None-Match") == self.etag:
                return web.Response(status=304, headers=headers)
        return web.Response(status=self.status, body=self.body, headers=headers, content_type="application/json")

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/jwks.json")

    async def start(self) -> "JwksServer":
        app = web.Application()
        app.router.add_get("/jwks.json", self._handle)
        app.router.add_get("/moved", self._moved)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/jwks.json"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
