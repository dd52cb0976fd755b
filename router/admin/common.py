"""What every admin route shares: the `Admin` it answers from, and JSON responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from router.control.plane import ControlPlane
from router.control.port import TenantWork
from router.core.snapshot import Snapshot
from router.health import HealthRegistry


@dataclass(frozen=True)
class Admin:
    control: ControlPlane
    health: HealthRegistry
    snapshot: Callable[[], Snapshot]
    registry: CollectorRegistry
    readiness: Callable[[], dict[str, Any]]
    config_info: Callable[[], dict[str, Any]]
    refresh_counters: Callable[[], Awaitable[None]]     # the workers' counters, now, before a scrape
    certs: Callable[[], dict[str, Any]] = dict          # listen.https certificates (router.tls.runtime)
    tenant_work: Callable[..., Awaitable[TenantWork]] | None = None     # in flight, summed over the workers


ADMIN_KEY: web.AppKey[Admin] = web.AppKey("admin", Admin)


def json_response(data, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", status=status,
                        content_type="application/json")
