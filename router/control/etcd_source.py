"""etcd as the config source: read everything at one revision, then follow the changes.

Layout under `control.etcd.prefix` (docs/control-plane.md, "etcd"):

    PREFIX/config          the config document, JSON or TOML, without its tenants
    PREFIX/tenants/<id>    one pin, as JSON: "eu-1" or {"stamp": "eu-1", "mode": "read-only"}

The source keeps one rule: what is served is exactly etcd's content at one revision.

    read     every key under PREFIX/ in pages at one revision -> a candidate, validated
             and guarded like any other (Reloader.submit); served revision := that one
    follow   watch PREFIX/ from the next revision; each watch response in revision order:
               only pins changed  -> one pin edit (Reloader.follow_source), revision moves on
               the config changed -> read again
             an event at or below the served revision is already served: skipped
    refused  a read or an edit the reloader refuses leaves the served config as it is;
             the next change under the prefix makes a new read
    broken   compaction, a broken stream, etcd down or partitioned (the health check of
             the watch fails), a leader lost: read again at one revision once etcd
             answers, backing off while it does not; the config served stays
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from router.config import ConfigError, parse_document
from router.config.schema import Etcd
from router.config.validate import key_path
from router.control.candidate import Bootstrap, Candidate, sniff_format
from router.control.pins import batch_op, check_op, journal_pin, pin_op
from router.control.reloader import INVALID, ReloadResult
from router.etcd.client import EtcdClient, KeyValue, WatchResponse, compare_mod_revision, delete_op, prefix_end, put_op
from router.etcd.layout import Layout, client_for
from router.etcd.limits import MAX_TXN_OPS
from router.etcd.errors import EtcdCompacted, EtcdError, EtcdTooLarge, EtcdUnavailable

if TYPE_CHECKING:
    from router.control.reloader import Reloader

log = logging.getLogger("stamp_router.control")

# Keys per range request of a full read: about 6 MB of answer for typical pins. etcd 3.4
# answers a page in time roughly linear in its size (1.2 s per 50,000 pins here, through
# the JSON gateway), so the size matters little; it bounds the memory of one answer.
PAGE = 50_000
# The first retry after a failure; doubled per failure up to etcd.max_backoff.
FIRST_BACKOFF = 0.2
# Outcome of an admin push that lost its compare-and-set: etcd moved on since the
# revision this router serves.
CONFLICT = "conflict"
# ... and one that could not be written or not seen served: etcd is unreachable.
UNAVAILABLE = "unavailable"


class SyncState(enum.Enum):
    CONNECTING = "connecting"      # no read done yet (or etcd down since start)
    SYNCED = "synced"              # serving etcd's content at `revision`
    REFUSED = "refused"            # etcd's content was refused; serving what was before
    DOWN = "down"                  # etcd unreachable; serving what was before


@dataclass(frozen=True)
class EtcdRead:
    revision: int
    candidate: Candidate | None          # None: the content cannot make a document
    errors: list[tuple[str, str]]
    pins: int


async def read_all(client: EtcdClient, layout: Layout, *, page: int = PAGE) -> EtcdRead:
    """Every key under the prefix at one revision, as a JSON candidate."""
    config: bytes | None = None
    pins: list[KeyValue] = []
    revision = 0
    async for revision, kvs in client.range_pages(layout.root, page=page):
        for kv in kvs:
            if kv.key == layout.config_key:
                config = kv.value
            elif kv.key.startswith(layout.tenants):
                pins.append(kv)
    data, errors = await asyncio.to_thread(compose, layout, config, pins)
    source = f"etcd {layout.prefix} @{revision}"
    return EtcdRead(revision, Candidate("etcd", source, data, "json") if data is not None else None, errors, len(pins))


def compose(layout: Layout, config: bytes | None, pins: list[KeyValue]) -> tuple[bytes | None, list[tuple[str, str]]]:
    """The config document with its tenants from the pin keys; blocks for a large table."""
    key = layout.config_key.decode()
    if config is None:
        return None, [(key, "missing: put the config document there (stamp-router etcd import)")]
    try:
        doc = parse_document(config, sniff_format(config, None))
    except ConfigError as exc:
        return None, [(key + (f": {p}" if p else ""), m) for p, m in exc.errors]
    errors = [(key + ": " + k, f"pins live under {layout.tenants.decode()}<id>, not in the config document")
              for k in ("tenants", "tenants_file") if k in doc]
    tenants: dict[str, Any] = {}
    for kv in pins:
        tenant = layout.tenant_of(kv.key) or ""
        try:
            tenants[tenant] = orjson.loads(kv.value)
        except orjson.JSONDecodeError:
            errors.append((key_path("tenants", tenant), f"the value of {kv.key.decode('utf-8', 'replace')} "
                                                       'is not JSON (a pin is "STAMP" or {"stamp": ..., "mode": ...})'))
    if errors:
        return None, errors
    doc["tenants"] = tenants
    return orjson.dumps(doc), []


class EtcdMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge("stamp_router_etcd_connected", "1 while the etcd watch is up and its health "
                               "checks pass; 0 while the router serves on without etcd.", registry=registry)
        self.revision = Gauge("stamp_router_etcd_revision", "The etcd revision whose content is served.",
                              registry=registry)
        self.reads = Counter("stamp_router_etcd_reads", "Full reads at one revision, by reason: start, "
                             "config (the config key changed), compacted, reconnect, refused (after a refused "
                             "change), forced (POST /config/reload).", ["reason"], registry=registry)
        self.events = Counter("stamp_router_etcd_pin_events", "Pin puts and deletes followed from the watch.",
                              registry=registry)
        self.failures = Counter("stamp_router_etcd_failures", "etcd requests or watches that failed.",
                                registry=registry)


class EtcdSource:
    def __init__(self, settings: Callable[[], Etcd], resolve: Callable[[str], str], reloader: Reloader,
                 registry: CollectorRegistry) -> None:
        self._settings = settings
        self._resolve = resolve
        self.reloader = reloader
        self.metrics = EtcdMetrics(registry)
        self.layout = Layout(settings().prefix)
        self.client: EtcdClient | None = None
        self.state = SyncState.CONNECTING
        self.revision = 0          # whose content is served
        self._seen = 0             # the last revision looked at (refused changes included)
        self._read_reason: str | None = "start"
        self.failures = 0
        self.last_error = ""
        self._advanced = asyncio.Condition()

    def started_at(self, revision: int, served: bool) -> None:
        """The start read etcd at `revision` (router.control.startup); follow from there.
        `served`: its content is what serves (else the last known good was kept)."""
        self._seen = revision
        if served:
            self.revision = revision
            self.metrics.revision.set(revision)
        self.state = SyncState.SYNCED if served else SyncState.REFUSED
        self._read_reason = None if served else "refused"
        self.metrics.connected.set(1)

    def _client(self) -> EtcdClient:
        if self.client is None:
            self.client = client_for(self._settings(), self._resolve)
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                if self._read_reason is not None:
                    await self.read(self._read_reason)
                await self._follow()
            except EtcdCompacted as exc:
                log.warning("etcd: %s; reading everything again at one revision", exc)
                self._read_reason = "compacted"
            except (EtcdError, OSError) as exc:
                await self._down(exc)
            except Exception:  # noqa: BLE001 - the source outlives any one bad answer
                log.exception("etcd source failed; reading again")
                await self._down(EtcdError("internal error"))

    async def _down(self, exc: Exception) -> None:
        self.failures += 1
        self.metrics.failures.inc()
        self.metrics.connected.set(0)
        message = str(exc) or exc.__class__.__name__
        if self.state is not SyncState.DOWN or message != self.last_error or self.failures % 100 == 0:
            log.warning("etcd unreachable (%d failures in a row): %s; serving config %s on", self.failures,
                        message, self.reloader.current.version)
        self.state, self.last_error = SyncState.DOWN, message
        self._read_reason = "reconnect"
        s = self._settings()
        # Jitter, so a fleet of routers does not come back in step against a recovering etcd.
        await asyncio.sleep(min(s.max_backoff, FIRST_BACKOFF * 2 ** min(self.failures, 20)) * random.uniform(0.5, 1.0))

    async def read(self, reason: str, *, force: bool = False) -> ReloadResult:
        """Read everything at one revision and submit it. EtcdError if etcd cannot be read."""
        self.metrics.reads.labels(reason).inc()
        read = await read_all(self._client(), self.layout)
        self._connected()
        if read.candidate is None:
            result = self.reloader.refuse(ReloadResult(INVALID, "etcd", errors=read.errors))
        else:
            cand = read.candidate if not force else Candidate(**{**read.candidate.__dict__, "force": True})
            result = await self.reloader.submit(cand, overlay=True, wait_persisted=False)
        self._seen = read.revision
        self._read_reason = None
        if result.ok:
            await self._served(read.revision, SyncState.SYNCED)
        else:
            self.state = SyncState.REFUSED
        return result

    def _connected(self) -> None:
        if self.state is SyncState.DOWN:
            log.info("etcd answers again after %d failures; catching up", self.failures)
        self.failures, self.last_error = 0, ""
        self.metrics.connected.set(1)

    async def _served(self, revision: int, state: SyncState) -> None:
        self.state = state
        async with self._advanced:
            self.revision = revision
            self._advanced.notify_all()
        self.metrics.revision.set(revision)

    async def _follow(self) -> None:
        client = self._client()
        endpoint = client.endpoint        # the watch and its check ask the same member
        watch = asyncio.ensure_future(self._consume(client.watch(self.layout.root, prefix_end(self.layout.root),
                                                                 self._seen + 1, endpoint=endpoint)))
        check = asyncio.ensure_future(self._check(client, endpoint))
        try:
            done, _ = await asyncio.wait([watch, check], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()          # raises what ended it
        finally:
            for task in (watch, check):
                task.cancel()
            await asyncio.gather(watch, check, return_exceptions=True)

    async def _check(self, client: EtcdClient, endpoint: str) -> None:
        """A watch on a member cut off from its cluster stays open and silent; a
        linearizable read at that member needs a leader, so it finds that out. Only
        there: another member answering would say nothing about this watch."""
        while True:
            await asyncio.sleep(self._settings().timeout)
            try:
                await client.range(self.layout.config_key, count_only=True, endpoint=endpoint)
            except EtcdUnavailable:
                client.demote(endpoint)   # read again from another member
                raise

    async def _consume(self, stream) -> None:
        async for resp in stream:
            self._connected()
            if await self._apply(resp):
                return               # a read is due: leave the watch, read, watch again

    async def _apply(self, resp: WatchResponse) -> bool:
        """Apply one watch response; True when a full read must follow instead."""
        events = [e for e in resp.events if e.kv.mod_revision > self._seen]
        if not events:
            if not resp.events and not resp.created and resp.revision > self._seen:
                # A progress notification (etcd sends them only once every event up to
                # its revision was sent): nothing under the prefix changed up to it.
                self._seen = resp.revision
                if self.state is SyncState.SYNCED:
                    await self._served(resp.revision, SyncState.SYNCED)
            return False
        last = max(e.kv.mod_revision for e in events)
        if self.state is not SyncState.SYNCED:
            self._read_reason = "refused"
            return True
        pins: dict[str, Any] = {}
        for event in events:                     # in revision order: the last change of a key wins
            tenant = self.layout.tenant_of(event.kv.key)
            if tenant is None:
                if event.kv.key == self.layout.config_key:
                    self._read_reason = "config"
                    return True
                continue                         # another key under the prefix: not ours to read
            if event.deleted:
                pins[tenant] = None
                continue
            try:
                pins[tenant] = journal_pin(orjson.loads(event.kv.value))
            except orjson.JSONDecodeError:
                pins[tenant] = {"stamp": None, "mode": None, "error": "not JSON"}   # check_op names it
        self._seen = last
        if not pins:
            await self._served(last, SyncState.SYNCED)
            return False
        self.metrics.events.inc(len(pins))
        label = f"{self.reloader.origin.version.split('@')[0] if self.reloader.origin.version else 'etcd'}@{last}"
        # Shielded: a broken watch cancels this task, but an edit half done (swapped, its
        # origin not yet recorded) would make the full read that follows compare against
        # the wrong content.
        result = await asyncio.shield(self.reloader.follow_source(_as_op(pins), source="etcd", label=label))
        if result.ok:
            await self._served(last, SyncState.SYNCED)
        else:
            self.state = SyncState.REFUSED
        return False

    # -- admin pushes --------------------------------------------------------------------
    async def write_pins(self, pins: dict[str, Any], *, wait: float = 5.0) -> ReloadResult:
        """Write pins to etcd (tenant -> {"stamp", "mode"}, or None to delete), as one
        transaction that holds only if nothing under the prefix changed since the
        revision served here; then wait (up to `wait`) until this router serves it."""
        started = time.monotonic()
        current = self.reloader.current
        try:
            check_op(current, batch_op(pins))
        except ConfigError as exc:
            return ReloadResult(INVALID, "pin", errors=exc.errors)
        if len(pins) > MAX_TXN_OPS:
            return ReloadResult(INVALID, "pin", errors=[("tenants", f"{len(pins)} pins in one push; etcd takes "
                                                         f"{MAX_TXN_OPS} in one transaction: write larger sets with "
                                                         "`stamp-router etcd import`")])
        if self.state is not SyncState.SYNCED:
            return ReloadResult(CONFLICT, "pin", errors=[("", f"this router is not in step with etcd ({self.state.value}): "
                                                          "nothing written")])
        served = self.revision
        ops = [delete_op(self.layout.tenant_key(t)) if pin is None
               else put_op(self.layout.tenant_key(t), orjson.dumps(_stored_pin(pin))) for t, pin in pins.items()]
        cas = compare_mod_revision(self.layout.root, "LESS", served + 1, prefix_end(self.layout.root))
        try:
            txn = await self._client().txn([cas], ops)
        except EtcdTooLarge as exc:
            return ReloadResult(INVALID, "pin", errors=[("tenants", str(exc))])
        if not txn.succeeded:
            return ReloadResult(CONFLICT, "pin", errors=[("", f"etcd changed since revision {served}, the one this "
                                                          "router serves: nothing written; retry")])
        async with self._advanced:
            try:
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.revision >= txn.revision), wait)
            except asyncio.TimeoutError:
                raise EtcdUnavailable(f"written to etcd at revision {txn.revision}, not served here "
                                      f"within {wait:.0f}s") from None
        result = ReloadResult("applied", "pin", version=self.reloader.current.version,
                              digest=self.reloader.current.digest, seconds=time.monotonic() - started)
        return result

    def status(self) -> dict[str, Any]:
        s = self._settings()
        return {"endpoints": list(s.endpoints), "prefix": s.prefix, "revision": self.revision,
                "state": self.state.value, "connected": self.state is not SyncState.DOWN and self.failures == 0,
                "failures": self.failures, "last_error": self.last_error or None}


def _as_op(pins: dict[str, Any]) -> dict[str, Any]:
    """One pin changed is a pin push; more (one etcd transaction) are a batch, which the
    drop guard weighs, as it does PATCH /tenants: `etcdctl del --prefix PREFIX/tenants/`
    must not empty every router's table."""
    if len(pins) == 1:
        ((tenant, pin),) = pins.items()
        if pin is None:
            return pin_op(tenant, None)
        if isinstance(pin, dict) and set(pin) == {"stamp", "mode"}:
            return pin_op(tenant, pin["stamp"], pin["mode"])
    return batch_op(pins)


def _stored_pin(pin: dict[str, Any]) -> Any:
    """A pin as it is kept in etcd: the stamp name alone when read-write."""
    return pin["stamp"] if pin.get("mode", "read-write") == "read-write" else {"stamp": pin["stamp"], "mode": pin["mode"]}


async def first_read(bootstrap: Bootstrap) -> tuple[Candidate | None, list[tuple[str, str]], int | None]:
    """The read at start: (candidate, errors, revision); etcd down is an error, not a wait."""
    settings = bootstrap.control.etcd
    assert settings is not None
    try:
        client = client_for(settings, bootstrap.resolve)
    except OSError as exc:
        return None, [("control.etcd.password_file", f"cannot read {settings.password_file}: {exc.strerror}")], None
    try:
        read = await read_all(client, Layout(settings.prefix))
    except EtcdError as exc:
        return None, [("control.etcd", f"cannot read etcd: {exc}")], None
    finally:
        await client.close()
    return read.candidate, read.errors, read.revision
