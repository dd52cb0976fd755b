"""JwtRuntime: the IO side of the jwt source, as the server uses it.

    rt = JwtRuntime(registry)
    await rt.prepare(valid)                       # keys first; ConfigError if none can be had
    snap = build_snapshot(valid, loaded_at=..., extra_sources={"jwt": rt.source_factory})
    ...                                           # swap snap in; /readyz reads rt.ready
    await rt.close()

Lifetimes. A key holder (one per key source) lives while a config that was prepared last,
or a snapshot still referenced, uses it: each jwt source made by source_factory counts as a
user until it is garbage-collected with its snapshot. So a reload to another jwks_url keeps
the old URL fresh for as long as requests may still be decided under the old snapshot,
and a candidate config refused after prepare() leaves the serving one untouched.

The verified-token cache is shared by the snapshots of one [jwt] configuration (a pin
update rebuilds the snapshot and must not empty the cache); a changed claim, issuer,
audience, algorithm list, leeway or key source gets a fresh cache.

Only configs with "jwt" in routing.sources need keys: for any other, prepare() is a no-op.
"""

from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Callable

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from router.core.jwt_cache import TokenCache
from router.core.jwt_keys import KeySet
from router.core.jwt_source import JwtSource
from router.core.sources import TenantSource
from router.errors import ConfigError
from router.jwt.holders import FileKeys, KeyHolder
from router.jwt.jwks import JwksManager
from router.jwt.keyfiles import KeyLoadError, file_source, resolve_path
from router.jwt.metrics import JwtMetrics
from router.jwt.tasks import Tasks

if TYPE_CHECKING:
    from router.config.load import ValidConfig
    from router.config.schema import Jwt

HolderId = tuple
# Settings that change when or how often keys are fetched, not what a token proves.
_REFRESH_ONLY = {"jwks_refresh", "jwks_min_refresh", "jwks_max_refresh", "unknown_kid_refetch"}


def jwt_in_use(valid: "ValidConfig") -> "Jwt | None":
    cfg = valid.config
    return cfg.jwt if cfg.jwt is not None and "jwt" in cfg.routing.sources else None


def holder_id(valid: "ValidConfig", jwt: "Jwt") -> HolderId:
    if jwt.jwks_url:
        return ("jwks_url", jwt.jwks_url)
    kind, path = file_source(valid, jwt)
    return (kind, path, tuple(jwt.algorithms)) if kind == "secret_file" else (kind, path)


class JwtRuntime:
    def __init__(self, registry: CollectorRegistry,
                 on_keys: Callable[[KeyHolder], None] | None = None) -> None:
        self._on_keys = on_keys                   # every new key set of any holder
        self._tasks = Tasks()
        self._holders: dict[HolderId, KeyHolder] = {}
        self._users: dict[HolderId, int] = {}
        self._pending: HolderId | None = None     # the key source of the last prepared config
        self._session: aiohttp.ClientSession | None = None
        self._cache: TokenCache | None = None
        self._cache_fingerprint: bytes | None = None
        self._cache_base = (0, 0)                 # hits and misses of caches replaced so far
        self._last_error: str | None = None
        self._closed = False
        self.metrics = JwtMetrics(registry, lambda: (self._cache, *self._cache_base))

    async def prepare(self, valid: "ValidConfig") -> None:
        """Load the keys this config needs before its snapshot is swapped in: read
        jwks_file/secret_file, fetch jwks_url (unless that URL is already kept fresh).
        Raise ConfigError([("jwt.…", reason)]) when keys cannot be had and none are held
        for that source. No-op when the config does not route by jwt."""
        if self._closed:
            raise RuntimeError("JwtRuntime is closed")
        jwt = jwt_in_use(valid)
        if jwt is None:
            self._pending = None
            self._retire_unused()
            return
        hid = holder_id(valid, jwt)
        holder = self._holders.get(hid)
        if holder is None:
            holder = self._new_holder(hid, jwt, valid)
            try:
                await holder.load()
            except KeyLoadError as exc:
                self._last_error = f"{exc.field}: {exc.message}"
                self.metrics.forget(holder.label)
                raise ConfigError([(exc.field, exc.message)]) from None
            self._holders[hid] = holder
            self._users.setdefault(hid, 0)
            holder.start(self._tasks)
        else:
            holder.configure(jwt)
            if isinstance(holder, FileKeys):
                await holder.refresh()   # pick up an edited file now; a failure keeps the keys held
        self._last_error = None
        self._pending = hid
        self._retire_unused()

    def source_factory(self, valid: "ValidConfig") -> TenantSource:
        jwt = jwt_in_use(valid)
        if jwt is None:
            raise ValueError("source_factory: this config has no [jwt] section")
        hid = holder_id(valid, jwt)
        holder = self._holders.get(hid)
        if holder is None or holder.keyref.current is None:
            raise RuntimeError("await JwtRuntime.prepare(valid) before building the snapshot of that config")
        source = JwtSource(jwt, holder.keyref, self._cache_for(jwt, hid), holder.on_unknown_kid)
        self._users[hid] = self._users.get(hid, 0) + 1
        weakref.finalize(source, self._release, hid)
        return source

    @property
    def ready(self) -> bool:
        """Keys are held for the last prepared config (True when it does not route by jwt)."""
        if self._pending is None:
            return True
        holder = self._holders.get(self._pending)
        return holder is not None and holder.keyref.current is not None

    def status(self) -> dict:
        cache = self._cache
        return {
            "ready": self.ready,
            "jwt": self._pending is not None,
            "last_prepare_error": self._last_error,
            "key_sources": [dict(h.status(), in_use=self._users.get(hid, 0) > 0 or hid == self._pending)
                            for hid, h in self._holders.items()],
            "cache": None if cache is None else {
                "entries": len(cache), "max_entries": cache.max_entries,
                "hits": self._cache_base[0] + cache.hits, "misses": self._cache_base[1] + cache.misses,
            },
        }

    async def close(self) -> None:
        self._closed = True
        for holder in self._holders.values():
            holder.stop()
        await self._tasks.cancel_all()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- internals

    def _new_holder(self, hid: HolderId, jwt: "Jwt", valid: "ValidConfig") -> KeyHolder:
        if hid[0] == "jwks_url":
            if self._session is None:
                self._session = aiohttp.ClientSession(headers={"User-Agent": "stamp-router"})
            state_dir = resolve_path(valid, valid.config.control.state_dir)
            holder: KeyHolder = JwksManager(hid[1], jwt, self.metrics, self._session, state_dir=state_dir)
        else:
            holder = FileKeys(hid[0], hid[1], jwt, self.metrics)
        holder.on_keys = self._on_keys
        return holder

    # -- in a worker process (router.process.worker): the supervisor fetches the keys

    def serve_in_worker(self, wake: Callable[[str], None]) -> None:
        """This copy of the runtime, inherited across fork, only verifies: the refreshers
        belong to the supervisor's loop, and an unknown kid asks the supervisor (wake(label))."""
        for holder in self._holders.values():
            holder.verify_only(functools.partial(wake, holder.label))

    def refetch(self, labels: list[str]) -> None:
        """A worker saw an unknown kid for these holders: wake their refreshers (each
        still refetches at most once per unknown_kid_refetch)."""
        for holder in self._holders.values():
            if holder.label in labels:
                holder.on_unknown_kid("")

    def set_keys(self, label: str, keys: KeySet) -> None:
        """New keys for the holder of that label, fetched by the supervisor."""
        for holder in self._holders.values():
            if holder.label == label:
                holder.keyref.current = keys

    def _cache_for(self, jwt: "Jwt", hid: HolderId) -> TokenCache | None:
        if jwt.cache_size == 0:
            # Drop the old cache too, or status and metrics would keep showing it.
            if self._cache is not None:
                self._cache_base = (self._cache_base[0] + self._cache.hits, self._cache_base[1] + self._cache.misses)
                self._cache = None
                self._cache_fingerprint = None
            return None
        fingerprint = orjson.dumps([jwt.model_dump(exclude=_REFRESH_ONLY), list(hid)])
        if fingerprint != self._cache_fingerprint or self._cache is None:
            old = self._cache
            if old is not None:
                self._cache_base = (self._cache_base[0] + old.hits, self._cache_base[1] + old.misses)
            self._cache = TokenCache(jwt.cache_size)
            self._cache_fingerprint = fingerprint
        return self._cache

    def _release(self, hid: HolderId) -> None:
        # Runs when a jwt source is collected with its snapshot.
        if self._closed:
            return
        self._users[hid] = self._users.get(hid, 1) - 1
        self._retire_unused()

    def _retire_unused(self) -> None:
        for hid in [h for h in self._holders if self._users.get(h, 0) <= 0 and h != self._pending]:
            holder = self._holders.pop(hid)
            self._users.pop(hid, None)
            try:
                holder.stop()
            except RuntimeError:   # the event loop is already gone (interpreter exit)
                pass
            self.metrics.forget(holder.label)
