"""Where the updater learns about stamps: a router's `GET /stamps`, or a router config
plus its own probes.

Both sources give the same `Registry` value. A read that fails, or that lists no stamp,
raises RegistryError: the pass then changes nothing and the hysteresis counts stay where
they were, because a broken registry says nothing about the stamps' health.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router.config.load import loc_to_path
from router.dns.errors import RegistryError
from router.dns.model import Registry, StampInfo


class _Stamp(BaseModel):
    # Other fields of the router's answer (backends, failover, panic) are for people.
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)
    region: str
    state: Literal["active", "draining", "offline"] = "active"
    weight: int = Field(ge=0)
    public: list[str] = []
    healthy: bool


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")
    version: str | None = None
    stamps: list[_Stamp]


def parse_registry(doc: object, source: str) -> Registry:
    """Validate a `GET /stamps` document; raise RegistryError naming the bad field."""
    try:
        parsed = _Document.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)
        details = "; ".join(f"{loc_to_path(e['loc']) or '(document)'}: {e['msg']}" for e in first[:5])
        raise RegistryError(f"registry {source} answered a document that is not a stamp list: {details}") from None
    if not parsed.stamps:
        raise RegistryError(f"registry {source} lists no stamps; changing nothing")
    names = [s.name for s in parsed.stamps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RegistryError(f"registry {source} lists stamp {dupes[0]!r} twice")
    stamps = tuple(StampInfo(s.name, s.region, s.state, s.weight, tuple(s.public), s.healthy)
                   for s in parsed.stamps)
    return Registry(parsed.version, stamps, source)


class HttpRegistry:
    """A router's admin `GET /stamps`."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    async def read(self) -> Registry:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
                async with session.get(self.url, headers={"Accept": "application/json"}) as resp:
                    if resp.status != 200:
                        raise RegistryError(f"registry {self.url} answered HTTP {resp.status}")
                    doc = await resp.json(content_type=None)
        except asyncio.TimeoutError:
            raise RegistryError(f"registry {self.url} did not answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise RegistryError(f"cannot read registry {self.url}: {exc}") from None
        except ValueError as exc:
            raise RegistryError(f"registry {self.url} answered something that is not JSON: {exc}") from None
        return parse_registry(doc, self.url)


class ProbeRegistry:
    """A router config, with the updater probing each stamp's backends itself.

    The config is read at every pass, so an edited file is picked up; one that no longer
    validates is a failed read. A stamp is healthy when any backend answers its health
    path with 2xx or 3xx within the health timeout (the source timeout caps it).
    """

    def __init__(self, config_path: str, timeout: float) -> None:
        self.path = config_path
        self.timeout = timeout

    async def read(self) -> Registry:
        from router.config import load_config
        from router.errors import ConfigError
        try:
            valid = load_config(self.path)
        except ConfigError as exc:
            first = exc.errors[0] if exc.errors else ("", "invalid")
            raise RegistryError(f"router config {self.path} does not load: {first[0] or '(document)'}: {first[1]}") from None
        stamps = valid.config.stamps
        async with aiohttp.ClientSession() as session:
            health = await asyncio.gather(*(self._stamp_up(session, s) for s in stamps))
        infos = tuple(StampInfo(s.name, s.region, s.state, s.weight, tuple(s.public), up)
                      for s, up in zip(stamps, health))
        return Registry(valid.version, infos, self.path)

    async def _stamp_up(self, session: aiohttp.ClientSession, stamp) -> bool:
        if not stamp.health.enabled:
            return True
        timeout = min(stamp.health.timeout, self.timeout)
        probes = [self._probe(session, f"http://{b}{stamp.health.path}", timeout) for b in stamp.backends]
        return any(await asyncio.gather(*probes))

    @staticmethod
    async def _probe(session: aiohttp.ClientSession, url: str, timeout: float) -> bool:
        try:
            async with session.get(url, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False


def make_registry(source) -> HttpRegistry | ProbeRegistry:
    if source.stamps_url:
        return HttpRegistry(source.stamps_url, source.timeout)
    return ProbeRegistry(source.config, source.timeout)
