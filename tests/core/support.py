"""Shared by the core tests: request facts, a fake health view, snapshots from TOML."""

from __future__ import annotations

from dataclasses import dataclass

from router.config import load_bytes
from router.core import build_snapshot
from router.core.snapshot import StampView
from router.core.health_view import HealthView
from router.core.sources import TenantRejected, TenantSource
from router.errors import ErrorKind

NOW = 1_700_000_000.0

STAMPS = """
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.1.0.10:8080", "10.1.0.11:8080"]
failover = ["eu-2"]

[[stamps]]
name = "eu-2"
region = "eu"
backends = ["10.1.1.10:8080"]
failover = ["eu-1"]

[[stamps]]
name = "us-1"
region = "us"
backends = ["10.2.0.10:8080"]
failover = ["us-2"]

[[stamps]]
name = "us-2"
region = "us"
backends = ["10.2.1.10:8080"]
state = "draining"
"""

ROUTING = """
[routing]
sources = ["subdomain", "header"]
domains = ["stamps.example.com"]
"""


@dataclass
class Facts:
    """A request as the core sees it (router.core.sources.RequestFacts)."""

    method: str = "GET"
    host: str | None = None
    tenant_header: str | None = None
    authorization: str | None = None
    geo: str | None = None
    client: str = "192.0.2.1"


class FakeHealth(HealthView):
    """Every backend healthy except those named down; whole stamps can be downed too."""

    def __init__(self, down_backends=(), down_stamps=()):
        super().__init__({})
        self.down_backends = set(down_backends)
        self.down_stamps = set(down_stamps)

    def healthy_backends(self, stamp: StampView) -> tuple[str, ...]:
        if stamp.name in self.down_stamps:
            return ()
        return tuple(b for b in stamp.backends if b not in self.down_backends)


class FakeJwtSource(TenantSource):
    """Stands in for router.core.jwt_source: a bearer token "good:<tenant>" names a tenant."""

    name = "jwt"

    def resolve(self, facts, now):
        auth = facts.authorization
        if auth is None:
            return None
        token = auth.removeprefix("Bearer ")
        if not token.startswith("good:"):
            raise TenantRejected(ErrorKind.INVALID_TOKEN, "invalid token",
                                 www_authenticate='Bearer error="invalid_token"')
        return token[len("good:"):]


JWT_SECTION = '\n[jwt]\njwks_url = "https://id.example.com/jwks.json"\n'


def snapshot(routing: str = ROUTING, stamps: str = STAMPS, extra: str = ""):
    """A snapshot from TOML pieces; a fake jwt source is wired in when jwt is a source."""
    text = routing + (JWT_SECTION if '"jwt"' in routing else "") + stamps + extra
    valid = load_bytes(text.encode(), fmt="toml", source="test")
    return build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": lambda v: FakeJwtSource()})
