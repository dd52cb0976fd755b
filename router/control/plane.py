"""The control side of one router process: its sources, the reloader, the last known good.

Sources, any of them together, all through Reloader:
- the config file, watched (and re-read on SIGHUP). Without control.url it is the whole
  config; with one it supplies only the bootstrap sections ([listen], [admin], [control], [process]).
- the control-plane URL, polled with If-None-Match, backing off while it fails.
- etcd: read at one revision, then watched (router.control.etcd_source).
- admin pushes: PUT /config, PUT/DELETE /tenants/{id} (router.admin.writes).

The last source to answer with a new config wins. A source repeating what it said before
changes nothing, so pushes stay until the file or the control plane changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from types import MappingProxyType
from typing import Any, Coroutine
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from router.config import ConfigError, format_of
from router.config.validate import _loopback_host
from router.control.candidate import Bootstrap, Candidate, bootstrap_from, file_candidate, sniff_format
from router.control.metrics import ControlMetrics
from router.control.moves import Moves
from router.control.foreground import Foreground
from router.control.lkg import StateDirInUse
from router.control.port import DataPath
from router.control.reaper import Reaper
from router.control.reloader import INVALID, UNCHANGED, Reloader, ReloadResult
from router.control.etcd_source import CONFLICT, UNAVAILABLE, EtcdSource
from router.control.pins import changes_as_pins
from router.control.sources import Fetched, FileWatcher, HttpPoller
from router.etcd.errors import EtcdError
from router.control.startup import Start, read_token

log = logging.getLogger("stamp_router.control")

# Bootstrap fields a running process cannot take over: they need a restart.
RESTART_FIELDS = (("listen", "http"), ("listen", "backlog"), ("listen", "reuse_port"), ("listen", "proxy_protocol"),
                  ("admin", "listen"), ("control", "watch_file"), ("control", "state_dir"), ("control", "etcd"))


class ControlPlane:
    def __init__(self, data_path: DataPath, registry: CollectorRegistry, start: Start) -> None:
        self.bootstrap: Bootstrap = start.bootstrap
        self.metrics = ControlMetrics(registry)
        self._tasks: set[asyncio.Task] = set()
        self._started = self._sighup_pending = False
        self.paused = False               # handing the state directory to another router
        self.reaper = Reaper(self.spawn, Foreground())
        self.reloader = Reloader(data_path, start.store, self.metrics, lambda: self.bootstrap, self.reaper)
        self.reloader.origin = start.origin
        self.reloader.last = start.last
        self.reloader.persist_error = start.state_dir_problem      # already said at start
        self.metrics.lkg_in_use.set(1 if start.origin.lkg else 0)
        self.metrics.last_success.set(1 if start.last.ok else 0)
        self._persist_at_start = start.persist
        self._seen_at_start = start.seen
        self._file_doc: dict[str, Any] = start.bootstrap.document
        control = start.bootstrap.control
        self.poller = None
        if control.url and control.url.lower().startswith("http://") and not _loopback_url(control.url):
            log.warning("control.url is plain http: whoever can alter its responses can reroute tenants; use https")
        if control.url:
            self.poller = HttpPoller(lambda: self.bootstrap.control,
                                     lambda: read_token(self.bootstrap, self.bootstrap.control.token_file),
                                     self._on_document, self._count_poll)
            self.poller.etag, self.poller.last_body = start.etag, start.body
        self.etcd = None
        if control.etcd is not None:
            self.etcd = EtcdSource(lambda: self.bootstrap.control.etcd, self.bootstrap.resolve, self.reloader,
                                   registry)
            if start.etcd_revision is not None:
                self.etcd.started_at(start.etcd_revision, served=start.last.ok and not start.origin.lkg)
        self.moves = Moves(self.reloader, data_path, registry, self.spawn, pins_elsewhere=self.etcd is not None)
        self.watcher = None
        if control.watch_file:
            # The watcher goes back to watching once the change is served, not once it is
            # also persisted: the next change is noticed sooner.
            self.watcher = FileWatcher(self._watched, lambda: self.bootstrap.control.watch_interval,
                                       lambda: self.reload_file(wait_persisted=False))

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Start a background task and keep a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._started = True
        if self._sighup_pending:
            self.on_sighup()
        if self._persist_at_start:
            await self.reloader.persist(self.reloader.current)
        if self.watcher is not None:
            self.watcher.prime(self._seen_at_start)
            self.spawn(self.watcher.run())
        if self.poller is not None:
            self.spawn(self.poller.run())
        if self.etcd is not None:
            self.spawn(self.etcd.run())

    async def pause(self) -> None:
        """Take no more changes (admin writes are answered 503) and leave the state
        directory as the last accepted change left it, then release it."""
        self.paused = True
        await self.reloader.hold()
        if self.reloader.store is not None:
            self.reloader.store.release()

    def resume(self) -> str | None:
        """Take the state directory back and changes again (the other router never came
        up). Returns a warning when the directory cannot be locked again."""
        try:
            warning = self.reloader.store.hold() if self.reloader.store is not None else None
        except StateDirInUse as exc:
            warning = f"cannot take control.state_dir back: {exc}"
        self.reloader.release()
        self.paused = False
        return warning

    async def close(self) -> None:
        await self.moves.close()              # a move ends completed or rolled back, never half way
        await self.reloader.persisted()       # an accepted config is not lost to a shutdown
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.poller is not None:
            await self.poller.close()
        if self.etcd is not None:
            await self.etcd.close()

    def on_sighup(self) -> None:
        if not self._started:             # start() reads the file once it can apply it
            self._sighup_pending = True
            return
        log.info("SIGHUP: reading %s", self.bootstrap.path)
        self.spawn(self.reload_file())

    # -- sources -----------------------------------------------------------------------
    def _watched(self) -> list[str]:
        paths = [self.bootstrap.path]
        tenants_file = self._file_doc.get("tenants_file")
        if not self.remote and isinstance(tenants_file, str):
            paths.append(self.bootstrap.resolve(tenants_file))
        return paths

    async def reload_file(self, *, force: bool = False, wait_persisted: bool = True) -> ReloadResult:
        path = self.bootstrap.path
        try:
            data = await asyncio.to_thread(_read, path)
        except OSError as exc:
            return self.reloader.refuse(ReloadResult(INVALID, "file", errors=[("", f"cannot read {path}: {exc.strerror}")]))
        if self.remote:
            return await self._rebase_from_file(data)
        # Parsed once, off the loop, for both roles of the file: the config and its bootstrap.
        try:
            cand, bootstrap = await asyncio.to_thread(file_candidate, path, data, force=force)
        except ConfigError:
            # The full validation reports it, with every other error.
            cand, bootstrap = Candidate("file", path, data, format_of(path), force), None
        if bootstrap is not None:
            self._file_doc = bootstrap.document
        result = await self.reloader.submit(cand, overlay=False, wait_persisted=wait_persisted)
        if result.ok and bootstrap is not None:
            self._adopt_bootstrap(bootstrap)
        return result

    async def _rebase_from_file(self, data: bytes) -> ReloadResult:
        """With control.url set the file holds only the bootstrap: take its new sections
        into the config being served, keeping the routing content and pins as they are."""
        try:
            bootstrap = await asyncio.to_thread(bootstrap_from, self.bootstrap.path, data)
        except ConfigError as exc:
            return self.reloader.refuse(ReloadResult(INVALID, "file", errors=exc.errors))
        self._file_doc = bootstrap.document
        if bootstrap.sections == self.bootstrap.sections:
            self.bootstrap = bootstrap
            return ReloadResult(UNCHANGED, "file")
        current = self.reloader.current
        config = current.config.model_copy(update={"listen": bootstrap.listen, "admin": bootstrap.admin,
                                                   "control": bootstrap.control, "process": bootstrap.process})
        valid = dataclasses.replace(current, config=config,
                                    document=MappingProxyType({**current.document, **bootstrap.sections}))
        result = await self.reloader.rebase(valid, "file")
        if result.ok:
            self._adopt_bootstrap(bootstrap)
        return result

    @property
    def remote(self) -> bool:
        """Whether the routing config comes from elsewhere (control.url, etcd): then the
        file holds only the bootstrap."""
        return bool(self.bootstrap.control.url or self.bootstrap.control.etcd)

    def _adopt_bootstrap(self, bootstrap: Bootstrap) -> None:
        old, self.bootstrap = self.bootstrap, bootstrap
        if bool(old.control.url) != bool(bootstrap.control.url) and not (old.control.etcd or bootstrap.control.etcd):
            log.warning("control.url was %s: switching between a file config and a control plane "
                        "takes effect at the next restart", "set" if bootstrap.control.url else "removed")
        for section, name in RESTART_FIELDS:
            before, after = getattr(getattr(old, section), name), getattr(getattr(bootstrap, section), name)
            if before != after:
                log.warning("%s.%s changed from %r to %r: it takes effect at the next restart",
                            section, name, before, after)

    async def _on_document(self, fetched: Fetched) -> ReloadResult:
        url = self.bootstrap.control.url
        cand = Candidate("url", url, fetched.data, sniff_format(fetched.data, fetched.content_type))
        result = await self.reloader.submit(cand, overlay=True, wait_persisted=False)
        self._count_poll("unchanged" if result.outcome == UNCHANGED else "changed")
        return result

    def _count_poll(self, result: str) -> None:
        self.metrics.polls.labels(result).inc()

    async def reload_source(self, *, force: bool = False) -> ReloadResult:
        """POST /config/reload: the configured source, read now."""
        if self.etcd is not None:
            try:
                return await self.etcd.read("forced", force=force)
            except EtcdError as exc:
                return self.reloader.refuse(ReloadResult(INVALID, "etcd", errors=[("control.etcd", str(exc))]))
        if self.poller is None:
            return await self.reload_file(force=force)
        fetched = await self.poller.fetch(conditional=False)
        if fetched.status != "changed":
            self._count_poll("error")
            return self.reloader.refuse(ReloadResult(INVALID, "url", errors=[("control.url", fetched.error)]))
        self.poller.etag = fetched.etag
        url = self.bootstrap.control.url
        cand = Candidate("url", url, fetched.data, sniff_format(fetched.data, fetched.content_type), force)
        return await self.reloader.submit(cand, overlay=True)

    async def push_config(self, data: bytes, content_type: str | None, *, force: bool) -> ReloadResult:
        if self.etcd is not None:
            key = self.etcd.layout.config_key.decode()
            return ReloadResult(CONFLICT, "admin", errors=[("", f"the config comes from etcd: write {key} there "
                                                           "(stamp-router etcd import); nothing changed")])
        cand = Candidate("admin", "admin", data, sniff_format(data, content_type), force)
        return await self.reloader.submit(cand, overlay=True)

    async def edit_pin(self, op: dict[str, Any], *, force: bool = False) -> ReloadResult:
        """A pin push: into etcd when it is the source (every router follows it), else
        into this router's table."""
        moving = [t for t in changes_as_pins(op) if self.moves.is_moving(t)]
        if moving:
            return ReloadResult(CONFLICT, "pin", errors=[(f"tenants.{moving[0]}", f"tenant {moving[0]!r} is being "
                                                          "moved: its pin changes when the move ends; nothing changed")])
        if self.etcd is None:
            return await self.reloader.edit_pin(op, force=force)
        try:
            return await self.etcd.write_pins(changes_as_pins(op))
        except EtcdError as exc:
            return ReloadResult(UNAVAILABLE, "pin", errors=[("control.etcd", str(exc))])

    # -- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        valid = self.reloader.current
        origin = self.reloader.origin
        out: dict[str, Any] = {"source": valid.source, "version": valid.version, "lkg": origin.lkg,
                               "local_edits": origin.edits}
        last = self.reloader.last
        if last is not None:
            summary = last.as_dict()
            if len(summary.get("errors", ())) > 10:
                summary["errors"] = summary["errors"][:10] + [{"path": "", "message": f"... {len(last.errors) - 10} more"}]
            out["last_reload"] = summary
        if self.poller is not None:
            out["control_plane"] = {"url": self.bootstrap.control.url, "etag": self.poller.etag,
                                    "failures": self.poller.failures, "last_error": self.poller.last_error or None}
        if self.etcd is not None:
            out["etcd"] = self.etcd.status()
        return out


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _loopback_url(url: str) -> bool:
    return _loopback_host(urlsplit(url).hostname or "")
