"""For the reload tests: a two-stamp routing config, a bounded steady load, the ways a
config file gets replaced, and a control-plane server."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.router_proc import RouterProcess, to_toml

TOKEN = "test-admin-token-5f1c"

# Header routing to two stamps of one residency: the routing part of the in-process tests'
# configs (TOML; add a version, pins, a tenants_file).
ROUTING = b"""
[routing]
sources = ["header"]
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.0.0.1:80"]
[[stamps]]
name = "eu-2"
region = "eu"
backends = ["10.0.0.2:80"]
"""


class SteadyLoad:
    """Keep-alive GETs for one tenant on a few connections, one thread each, until stopped.

    Bounded twice: at most `max_requests` per connection and `max_seconds` in all, so a
    test that forgets to stop it still ends. Only 127.0.0.1.
    """

    def __init__(self, router: RouterProcess, tenant: str, *, connections: int = 2,
                 max_requests: int = 20000, max_seconds: float = 40.0) -> None:
        self.port = router.port
        self.tenant = tenant
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.results: list[list[tuple[int, str]]] = [[] for _ in range(connections)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(r,), daemon=True) for r in self.results]

    def __enter__(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, out: list[tuple[int, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and len(out) < self.max_requests and time.monotonic() < self.deadline:
            try:
                conn.request("GET", "/load", headers={"X-Tenant-ID": self.tenant})
                resp = conn.getresponse()
                resp.read()
                out.append((resp.status, resp.getheader("X-Stamp") or ""))
            except (OSError, http.client.HTTPException) as exc:
                out.append((0, type(exc).__name__))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def count(self) -> int:
        return sum(len(r) for r in self.results)

    def stop(self) -> list[list[tuple[int, str]]]:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self.results

    def failures(self) -> list[tuple[int, str]]:
        return [r for conn in self.results for r in conn if r[0] != 200]

    def stamps_per_connection(self) -> list[list[str]]:
        """Each connection's stamps with repeats collapsed: ["eu-1", "eu-2"] for one switch."""
        out = []
        for conn in self.results:
            seq: list[str] = []
            for _, stamp in conn:
                if not seq or seq[-1] != stamp:
                    seq.append(stamp)
            out.append(seq)
        return out


# -- replacing the config file, the three ways it happens in production ------------------
def write_in_place(path, text: str) -> None:
    with open(path, "w") as fh:              # truncate and write: the inode stays
        fh.write(text)


def write_by_rename(path, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_configmap(path, text: str) -> None:
    """What the kubelet does: a new timestamped directory, then one symlink swap."""
    root = os.path.dirname(path)
    name = os.path.basename(path)
    version = f"..v{time.monotonic_ns()}"
    os.mkdir(os.path.join(root, version))
    with open(os.path.join(root, version, name), "w") as fh:
        fh.write(text)
    os.symlink(version, os.path.join(root, "..data_tmp"))
    os.replace(os.path.join(root, "..data_tmp"), os.path.join(root, "..data"))
    if not os.path.islink(path):
        os.unlink(path)
        os.symlink(os.path.join("..data", name), path)


WRITERS = {"in_place": write_in_place, "rename": write_by_rename, "configmap": write_configmap}


def write_doc(router: RouterProcess, writer, changes: dict) -> dict:
    """Write the router's config with `changes` on top, keeping its ports and state_dir."""
    doc = {**router.doc, **changes}
    writer(router.config_path, to_toml(doc))
    return doc


def route(router: RouterProcess, tenant: str) -> str | None:
    return router.admin_json(f"/route?tenant={tenant}").get("stamp")


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def put_json(router: RouterProcess, path: str, body, token: str | None = TOKEN, method: str = "PUT", **query):
    qs = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    headers = {"Content-Type": "application/json", **(auth(token) if token else {})}
    status, _, data = router.admin(method, path + qs, json.dumps(body).encode(), headers)
    return status, json.loads(data) if data else None


# -- a control plane -------------------------------------------------------------------
@dataclass
class ControlPlaneServer:
    """Serves one config document with an ETag; records what each poll asked and got."""

    doc: dict
    port: int = 0
    polls: list[dict] = field(default_factory=list)
    runner: web.AppRunner | None = None

    def body(self) -> bytes:
        return json.dumps(self.doc).encode()

    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body()).hexdigest()[:16] + '"'

    async def handle(self, request: web.Request) -> web.Response:
        etag = self.etag()
        status = 304 if request.headers.get("If-None-Match") == etag else 200
        self.polls.append({"if_none_match": request.headers.get("If-None-Match"), "status": status})
        if status == 304:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=self.body(), content_type="application/json", headers={"ETag": etag})

    async def start(self) -> ControlPlaneServer:
        app = web.Application()
        app.router.add_get("/config", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/config"
