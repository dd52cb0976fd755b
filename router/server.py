"""`stamp-router serve`: one supervisor and its worker processes.

The supervisor (`Supervisor` here) does what must happen once per host: the config
sources, validation, the drop guard and the last known good (router.control), the admin
API (router.admin), active health probes and the passive ejection decision
(router.health), JWT key fetching (router.jwt). It opens the listening sockets once and
forks the workers (router.process), which run the data path (router.proxy) only.

This module wires those parts together; none of them imports it. The control plane sees
the data path through its port (router.control.port): `snapshot()` and `apply()`, which
here means: a pin edit, or a config with a small table, is sent to every worker and
answered once all serve it; a config with a large table forks a new generation of
workers holding the new snapshot (shared, never copied per worker) and drains the old.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from enum import Enum
from typing import Callable

import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from router.admin.app import build_app
from router.admin.common import Admin
from router.config import ConfigError, ValidConfig
from router.config.load import PinsText
from router.config.schema import Process
from router.control import ControlPlane, Start, choose_start
from router.control.candidate import default_state_dir, read_bootstrap
from router.control.lkg import StateDirInUse
from router.control.port import PinEdit, TenantWork
from router.core.snapshot import Snapshot, build_snapshot
from router.health import HealthRegistry
from router.build import current
from router.metrics import SummedProxyMetrics, register_build_info
from router.control.bulk import busy_worker
from router.core.pin_table import PinTable
from router.process.listeners import SlotListeners, open_listeners
from router.process.share import rebuilt
from router.process import wire
from router.process.messages import Kind
from router.process.pool import WorkerPool, WorkersFailed
from router.process.rate_shares import RateShares
from router.process.reports import REPORT_INTERVAL, ReportKind
from router.process.takeover import Handover, TakeoverError, TakeoverServer, request_takeover
from router.process.worker import WorkerSpec
from router.state import RouterState
from router.tls.runtime import TlsRuntime

log = logging.getLogger("stamp_router")

# Seconds a /metrics scrape waits for the workers' counters; a worker slower than that
# is shown with the counters it reported last (at most about a second old).
COLLECT_TIMEOUT = 1.0
# Seconds a question about one tenant's work in flight waits for the workers; one that
# does not answer makes the answer incomplete (a move then keeps waiting), not wrong.
TENANT_TIMEOUT = 2.0


def listening(listen) -> str:
    return " and ".join(f"{scheme} {addr}" for scheme, addr in (("http", listen.http), ("https", listen.https))
                        if addr)


def _base_of(snap: Snapshot) -> dict | None:
    """The snapshot's big pin dict: the table itself, or the base under its pushed pins."""
    pins = snap.valid.pins
    base = pins.base if isinstance(pins, PinTable) else pins
    return base if type(base) is dict else None


def _needs_rebuild(snap: Snapshot) -> bool:
    base = _base_of(snap)
    return base is not None and len(base) >= wire.SHARE_BY_FORK


def worker_count(process: Process) -> int:
    """[process] workers as a number: "auto" is the CPUs this process may run on."""
    if process.workers == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return process.workers


class Phase(Enum):
    """Where the supervisor is in its life; only SERVING is ready.

    STARTING lasts until every part is up, the takeover socket included: the admin API
    answers from early on, and a ready router must be one that `serve --takeover` can
    replace. DRAINING starts at SIGTERM, so a load balancer stops sending traffic."""
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"


class Supervisor:
    def __init__(self, start: Start, listeners: SlotListeners, admin_listeners: list[socket.socket], *,
                 config_path: str | None = None, https_listeners: list[socket.socket] | None = None) -> None:
        self.config_path = config_path
        self.listeners = listeners
        self.https_listeners = https_listeners or []
        self._tls_watch: asyncio.Task | None = None
        self.admin_listeners = admin_listeners
        self.phase = Phase.STARTING
        self.registry = CollectorRegistry()
        self.tls = TlsRuntime(self.registry)
        self.health = HealthRegistry(self.registry, tls_for=self.tls.upstream_for)
        self.jwt = self._jwt_runtime()
        self.initial: ValidConfig | None = start.valid
        self.state: RouterState | None = None
        self._next: Snapshot | None = None          # the snapshot a generation being started serves
        self.rate_shares = RateShares(lambda pid, shares, forget: self.pool.tell(pid, Kind.SHARES, shares=shares,
                                                                                  forget=forget))
        self.metrics = SummedProxyMetrics(self.registry, lambda: self.config_info() if self.state else {})
        register_build_info(self.registry)
        self.pool = WorkerPool(self._worker_spec, {
            ReportKind.PASSIVE: self._on_passive,
            ReportKind.COUNTERS: self.metrics.update,
            ReportKind.DEMAND: self.rate_shares.on_demand,
            ReportKind.UNKNOWN_KID: self._on_unknown_kid,
        }, self.metrics.retire, self.registry)
        self.control = ControlPlane(self, self.registry, start)
        self._admin_runner: web.AppRunner | None = None
        self._rebalancing: asyncio.Task | None = None
        self._rebuild_task: asyncio.Task | None = None    # _rebuild_and_refork
        self._rebuild_stop = threading.Event()
        self._rebuilding: dict | None = None              # the table it copies
        self._forking = asyncio.Lock()                    # applying a change, or forking a generation
        self.takeover: TakeoverServer | None = None
        self.stopping = asyncio.Event()

    def _jwt_runtime(self):
        try:
            from router.jwt.runtime import JwtRuntime
        except ImportError:
            return None
        return JwtRuntime(self.registry, on_keys=self._keys_changed)

    # -- the data path's port (router.control.port) --------------------------------------
    def snapshot(self) -> Snapshot:
        return self.state.snapshot

    async def apply(self, valid: ValidConfig, edit: PinEdit | None = None) -> Snapshot:
        """Validate-then-swap: a config that cannot be built, or whose workers cannot
        start, changes nothing."""
        snap = await self.build(valid)
        if _base_of(snap) is not self._rebuilding:
            await self._stop_rebuilding()    # the table it copies is being replaced
        async with self._forking:
            return await self._apply(valid, snap, edit)

    async def _apply(self, valid: ValidConfig, snap: Snapshot, edit: PinEdit | None) -> Snapshot:
        before = self.state.snapshot
        if edit is not None:
            self.state.swap(snap)
            # Workers that do not answer are replaced, from this snapshot.
            await self.pool.ask_all(Kind.PINS, op=edit.op, base=edit.base_version, edits=edit.edits, label=edit.label,
                                    before=before.digest, after=snap.digest, at=snap.loaded_at)
            if _base_of(snap) is not _base_of(before) and _needs_rebuild(snap):
                # The pushed pins were folded into a new table (router.core.pin_table), which
                # each worker made for itself, privately: fork them again from one shared.
                self._rebuild_task = asyncio.get_running_loop().create_task(self._rebuild_and_refork())
            return snap
        if self._sent_whole(valid):
            self.state.swap(snap)
            self.tls.adopt(valid.config, valid.base_dir)
            await self.pool.ask_all(Kind.CONFIG, config=wire.dump(valid), at=snap.loaded_at)
            return snap
        self._next = snap
        count = worker_count(valid.config.process)
        self.listeners.ensure(count)
        try:
            await self.pool.start_generation(count)
        except WorkersFailed as exc:
            raise ConfigError([("", f"the workers for this config did not start: {exc}")]) from None
        finally:
            self._next = None
        self.state.swap(snap)
        self.tls.adopt(valid.config, valid.base_dir)
        if _needs_rebuild(snap):
            self._rebuild_task = asyncio.get_running_loop().create_task(self._rebuild_and_refork())
        return snap

    def reforking(self) -> bool:
        """A new generation of workers is on its way (a large table being rebuilt after a
        reload): the workers serving now will drain, and what they hold with them."""
        return self._rebuild_task is not None and not self._rebuild_task.done()

    # -- a large table rebuilt to stay shared (router.process.share) -------------------
    def _with_base(self, snap: Snapshot, base: dict[str, str]) -> Snapshot:
        """`snap` with its big pin dict replaced by an equal one (pushed pins kept on top)."""
        valid = snap.valid
        pins = PinTable(base, valid.pins.edits, len(valid.pins)) if isinstance(valid.pins, PinTable) else base
        text = valid.pins_text
        if valid.pins_json is not None:           # the same text is the text of the rebuilt table
            text = PinsText(pins, text.text)
        extra = {"jwt": self.jwt.source_factory} if self.jwt is not None else {}
        return build_snapshot(dataclasses.replace(valid, pins=pins, pins_text=text), loaded_at=snap.loaded_at,
                              extra_sources=extra)

    async def _rebuilt(self, snap: Snapshot, stop: Callable[[], bool] = lambda: False) -> dict[str, str] | None:
        base = _base_of(snap)
        names = {stamp.name: stamp.name for stamp in snap.config.stamps}
        started = time.monotonic()
        with busy_worker():
            table = await asyncio.to_thread(rebuilt, base, names, stop)
        if table is not None:
            log.info("the %d-pin table rebuilt to stay shared with the workers in %.2fs", len(table),
                     time.monotonic() - started)
        return table

    async def _rebuild_and_refork(self) -> None:
        """After a new generation forked from a freshly loaded table: rebuild it, then
        fork the workers again from the rebuilt one. Stopped by the next apply() that
        replaces the table, which waits for this to end."""
        stop = threading.Event()
        self._rebuild_stop = stop
        snap = self.state.snapshot
        self._rebuilding = base = _base_of(snap)
        try:
            table = await self._rebuilt(snap, stop.is_set)
            if table is None:
                return
            # Pin edits went on meanwhile on top of the same table; none may come while the
            # workers fork, or the new ones would miss it.
            async with self._forking:
                current = self.state.snapshot
                if stop.is_set() or _base_of(current) is not base:
                    return
                self._next = new = self._with_base(current, table)
                try:
                    await self.pool.start_generation(worker_count(new.config.process))
                finally:
                    self._next = None
                self.state.swap(new)
            log.info("workers forked again from the rebuilt table (generation %d)", self.pool.generation)
        except WorkersFailed as exc:
            log.error("the workers forked from the rebuilt table did not start (the others serve on): %s", exc)
        except Exception:  # noqa: BLE001 - a background improvement must not take the supervisor down
            log.exception("rebuilding the pin table failed")
        finally:
            self._rebuilding = None

    async def _stop_rebuilding(self) -> None:
        task = self._rebuild_task
        if task is None or task.done():
            return
        self._rebuild_stop.set()
        await asyncio.shield(task)

    def _sent_whole(self, valid: ValidConfig) -> bool:
        """A full change reaches the workers serving as a message when its table is small,
        the worker count stays and no JWT key source is involved (the keys live in the
        supervisor; a worker knows the key sources of its fork); else a new generation is
        forked. Connections stay open through the first, and are drained by the second."""
        return (len(valid.pins) < wire.SHARE_BY_FORK and worker_count(valid.config.process) == len(self.pool.slots)
                and "jwt" not in valid.config.routing.sources)

    async def build(self, valid: ValidConfig) -> Snapshot:
        """Everything a config needs before it may serve (keys included), then the snapshot."""
        extra = {}
        if self.jwt is not None:
            await self.jwt.prepare(valid)
            extra["jwt"] = self.jwt.source_factory
        elif "jwt" in valid.config.routing.sources:
            raise ConfigError([("routing.sources", "the jwt source is not available in this build")])
        self.tls.prepare(valid)
        return build_snapshot(valid, loaded_at=time.time(), extra_sources=extra)

    # -- workers --------------------------------------------------------------------------
    def _worker_spec(self, slot: int, generation: int) -> WorkerSpec:
        snap = self._next if self._next is not None and generation > self.pool.generation else self.state.snapshot
        cfg = snap.config
        routable, panic = self.health.routing_view()
        extra = {"jwt": self.jwt.source_factory} if self.jwt is not None else {}
        count = worker_count(cfg.process)
        return WorkerSpec(slot=slot, generation=generation, snapshot=snap,
                          listeners=self.listeners.for_slot(slot, count),
                          proxy_protocol=cfg.listen.proxy_protocol, access_log=cfg.admin.access_log,
                          drain_timeout=cfg.timeouts.drain, workers=count, routable=routable, panic=panic,
                          extra_sources=extra, jwt=self.jwt, supervisor_pid=os.getpid(),
                          close_fds=self._own_fds() + self.listeners.others(slot, count),
                          https_listeners=self.https_listeners,
                          redirect_http=cfg.listen.redirect_http, tls=self.tls)

    def _own_fds(self) -> list[int]:
        store = self.control.reloader.store
        own = [store.lock_fd if store is not None else None,
               self.takeover.fileno if self.takeover is not None else None]
        return [sock.fileno() for sock in self.admin_listeners] + [fd for fd in own if fd is not None]

    def _health_changed(self) -> None:
        routable, panic = self.health.routing_view()
        self.pool.broadcast(Kind.HEALTH, routable=routable, panic=panic)

    def _keys_changed(self, holder) -> None:
        self.pool.broadcast(Kind.KEYS, holder=holder.label, keys=wire.dump_keys(holder.keyref.current))

    def _on_unknown_kid(self, worker: int, labels: list[str]) -> None:
        if self.jwt is not None:
            self.jwt.refetch(labels)

    def _on_passive(self, worker: int, outcomes) -> None:
        for backend, ok, kind in outcomes:
            self.health.outcome(backend, ok, kind)

    async def _rebalance(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            self.rate_shares.rebalance([p.pid for p in self.pool.current()])

    async def refresh_counters(self) -> None:
        answers = await self.pool.ask_all(Kind.COLLECT, timeout=COLLECT_TIMEOUT)
        for pid, answer in answers.items():
            self.metrics.update(pid, answer["counters"])
        self.health.panic_routed = self.metrics.total().panic_routed

    async def tenant_work(self, tenant: str, close_tunnels: bool = False) -> TenantWork:
        answers, unanswered = await self.pool.ask_every(Kind.TENANT, TENANT_TIMEOUT, tenant=tenant,
                                                         close_tunnels=close_tunnels)
        stamps: dict[str, tuple[int, int, int]] = {}
        held = 0
        for answer in answers:
            held += answer["held"]
            for stamp, counts in answer["stamps"].items():
                stamps[stamp] = tuple(a + b for a, b in zip(stamps.get(stamp, (0, 0, 0)), counts))
        return TenantWork(stamps, held, unanswered)

    # -- what the admin API shows ---------------------------------------------------------
    def config_info(self) -> dict:
        snap = self.state.snapshot
        info = {"version": snap.version, "digest": snap.digest, "source": snap.valid.source,
                "loaded_at": snap.loaded_at, "stamps": len(snap.stamps), "pins": len(snap.pins)}
        status = self.control.status()
        info.update(lkg=status["lkg"], local_edits=status["local_edits"], last_reload=status.get("last_reload"))
        if "etcd" in status:          # the revision served, and whether etcd answers
            info["etcd"] = status["etcd"]
        return info

    def readiness(self) -> dict:
        # Serving the last known good is ready (static stability); `lkg` says it is a fallback.
        config = {"ok": self.state is not None}
        if self.state is not None:
            config.update(self.control.status())
        jwt = {"ok": self.jwt is None or self.jwt.ready}
        if self.jwt is not None:
            jwt["status"] = self.jwt.status()
        return {
            "config": config,
            "health": {"ok": bool(self.health.first_round_done)},
            "jwt_keys": jwt,
            "workers": self.pool.status(),
            "memory": self._memory_check(),
            "serving": {"ok": self.phase is Phase.SERVING},
        }

    def _memory_check(self) -> dict:
        """Not ready while a worker is over limits.max_memory (as last reported, about once a
        second): the kernel keeps sending its share of new connections to its own listening
        socket, where they wait, so a load balancer should send them elsewhere meanwhile."""
        shedding = self.metrics.workers_shedding()
        return {"ok": shedding == 0, "workers_shedding": shedding}

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        valid, self.initial = self.initial, None    # a reload must be able to free it
        snap = await self.build(valid)
        self.state = RouterState(snap, self.health)
        # Before the workers fork: they share this process's TLS contexts (router.tls.server).
        self.tls.adopt(valid.config, valid.base_dir)
        if _needs_rebuild(snap):
            # Before the first workers fork (router.process.share); the start can wait.
            self.state.swap(self._with_base(snap, await self._rebuilt(snap)))
            snap = self.state.snapshot     # the table as loaded is freed before the workers fork
            valid = snap.valid
        self.health.on_change = self._health_changed
        cfg = valid.config
        count = worker_count(cfg.process)
        cpus = len(os.sched_getaffinity(0))
        if count > cpus:
            log.warning("process.workers is %d, more than the %d CPUs this process may run on: "
                        "workers will share CPUs", count, cpus)
        _open_files_for(cfg.listen.max_connections)
        admin = Admin(control=self.control, health=self.health, snapshot=self.snapshot, registry=self.registry,
                      readiness=self.readiness, config_info=self.config_info, refresh_counters=self.refresh_counters,
                      certs=self.tls.info, tenant_work=self.tenant_work)
        self._admin_runner = web.AppRunner(build_app(admin), access_log=None, handle_signals=False)
        await self._admin_runner.setup()
        for sock in self.admin_listeners:
            await web.SockSite(self._admin_runner, sock).start()
        await self.health.start()
        self.listeners.ensure(count)          # taken over from a router with fewer workers
        await self.pool.start_generation(count)
        await self.control.start()
        if self.tls.watched_paths():
            self._tls_watch = asyncio.get_running_loop().create_task(
                self.tls.watcher(lambda: self.state.snapshot.config.control.watch_interval, self._certs_changed).run())
        self._rebalancing = asyncio.get_running_loop().create_task(self._rebalance())
        store = self.control.reloader.store
        if store is not None:
            self.takeover = TakeoverServer(store.dir, self._hand_over, self._resume, self.stopping.set)
            try:
                await self.takeover.start()
            except OSError as exc:
                # An unusable state_dir was said already, in one line: this is its consequence.
                said = self.control.reloader.persist_error is not None
                (log.info if said else log.warning)(
                    "no takeover socket in %s (serve --takeover cannot replace this router): %s", store.dir, exc)
                self.takeover = None
        log.info("serving on %s with %d worker(s), admin on %s, config %s", listening(cfg.listen), count,
                 cfg.admin.listen, snap.version)
        build = current()
        # Interpreted without being asked to: the operator should know it is the slower build.
        (log.warning if build.fell_back else log.info)("data path %s", build.describe())

    def _certs_changed(self, why: str) -> None:
        # One process watches and checks the files; the workers reread them when told, so
        # none polls the disk itself and all take a rotation the supervisor accepted.
        self.pool.broadcast(Kind.CERTS, why=why)

    def on_sighup(self) -> None:
        """The config, and the certificates: this process's copy (GET /certs, the metrics)
        and every worker's, which serve the handshakes."""
        if self.tls.reload_files("SIGHUP"):
            self._certs_changed("SIGHUP")
        self.control.on_sighup()

    # -- a new router taking over (router.process.takeover) ------------------------------
    async def _hand_over(self) -> tuple[list[list[socket.socket]], list[socket.socket], str | None]:
        await self.control.pause()
        return self.listeners.sets, self.admin_listeners, self.listeners.address

    async def _resume(self) -> None:
        warning = self.control.resume()
        if warning:
            log.warning("%s", warning)

    async def stop(self) -> None:
        cfg = self.state.snapshot.config
        self.phase = Phase.DRAINING
        if cfg.timeouts.grace > 0:
            await asyncio.sleep(cfg.timeouts.grace)
        if self.takeover is not None:
            # Once handed over, the socket file in the state directory is the new router's.
            await self.takeover.close(unlink=not self.control.paused)
        await self.control.close()
        await self._stop_rebuilding()
        if self._tls_watch is not None:
            self._tls_watch.cancel()
        if self._rebalancing is not None:
            self._rebalancing.cancel()
        await self.pool.stop(cfg.timeouts.drain + 5.0)
        await self.health.close()
        if self.jwt is not None:
            await self.jwt.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        self.listeners.close()
        for sock in self.https_listeners + self.admin_listeners:
            sock.close()

    async def run(self, on_serving: Callable[[], None] | None = None) -> int:
        loop = asyncio.get_running_loop()
        # Handlers go in before start(): /readyz may answer (and an orchestrator send
        # SIGTERM) as soon as the admin listener is up.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)   # its default would end the process
        try:
            await self.start()
        except WorkersFailed as exc:
            print(f"stamp-router: cannot start: {exc}", file=sys.stderr)
            await self.pool.stop(5.0)
            return 1
        self.phase = Phase.SERVING
        if on_serving is not None:
            on_serving()
        cfg = self.state.snapshot.config
        print(f"stamp-router: ready, proxy {listening(cfg.listen)}, admin {cfg.admin.listen}", file=sys.stderr, flush=True)
        await self.stopping.wait()
        print("stamp-router: draining", file=sys.stderr, flush=True)
        await self.stop()
        return 0


def _print_errors(exc: ConfigError) -> None:
    print("\n".join(exc.lines()), file=sys.stderr)


# Descriptors a worker needs besides its client connections: listeners, the channel, the
# log, and one upstream connection per client connection at most.
_FILES_PER_CONNECTION, _FILES_BESIDES = 2, 64


def _open_files_for(max_connections: int) -> None:
    """Raise this process's open-file limit to its hard limit (the workers inherit it),
    as nginx's worker_rlimit_nofile would, and say so when even that is too few for
    listen.max_connections: connections past it would fail at accept, not at the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    needed = max_connections * _FILES_PER_CONNECTION + _FILES_BESIDES
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("listen.max_connections is %d, but this process may open %d files (RLIMIT_NOFILE) and a "
                    "connection takes up to %d with its upstream one: past about %d connections accepts fail; "
                    "raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections", max_connections, soft,
                    _FILES_PER_CONNECTION, (soft - _FILES_BESIDES) // _FILES_PER_CONNECTION)


def serve(config_path: str, *, takeover: bool = False) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.install()
    return asyncio.run(run_config(config_path, takeover=takeover))


async def run_config(config_path: str, *, takeover: bool = False) -> int:
    """The router for a config file, until it is stopped: the exit status. With
    `takeover`, the listening sockets come from the router running on the same state
    directory, which drains once this one serves."""
    handover = None
    if takeover:
        try:
            handover = await asyncio.to_thread(request_takeover, state_dir_of(config_path))
        except TakeoverError as exc:
            print(f"stamp-router: cannot take over: {exc}", file=sys.stderr)
            return 1
    status = await _run(config_path, handover)
    if handover is not None and status != 0:
        handover.abandon()        # the old router sees it, and serves on
    return status


def state_dir_of(config_path: str) -> str:
    """The state directory the config file names (or would, if it cannot be read)."""
    try:
        bootstrap = read_bootstrap(config_path)
    except ConfigError:
        return default_state_dir(config_path)
    return bootstrap.resolve(bootstrap.control.state_dir)


async def _run(config_path: str, handover: Handover | None) -> int:
    # The start config may come from the control plane or the last known good
    # (router.control.startup); exit 1 only when there is nothing valid to serve.
    try:
        start = await choose_start(config_path)
    except ConfigError as exc:
        _print_errors(exc)
        return 1
    # Before any listener is bound: a second router on the same state_dir must go
    # before it accepts a connection it would then reset.
    try:
        unlocked = start.store.hold()
    except StateDirInUse as exc:
        _print_errors(ConfigError([("control.state_dir", str(exc))]))
        return 1
    if unlocked and unlocked != start.state_dir_problem:    # one line per state_dir problem
        start.warnings.append(unlocked)
        start.state_dir_problem = unlocked
    for warning in start.warnings:
        log.warning("%s", warning)
    cfg = start.valid.config
    if handover is not None:
        # The running router's address, whatever this config says (docs/operations.md).
        listeners = SlotListeners(handover.address or cfg.listen.http, cfg.listen.backlog, handover.sets)
        admin_listeners = handover.admin_listeners
        log.info("took over %d proxy (%d per worker slot) and %d admin listening socket(s) from the running router",
                 len(listeners.all()), len(listeners.sets[0]) if listeners.sets else 0, len(admin_listeners))
    else:
        try:
            listeners = SlotListeners.open(cfg.listen.http, cfg.listen.backlog, worker_count(cfg.process),
                                           exclusive=not cfg.listen.reuse_port)
            admin_listeners = open_listeners(cfg.admin.listen, 128, False)
        except OSError as exc:
            print(f"stamp-router: cannot start: {exc}", file=sys.stderr)
            return 1
    try:
        # Not handed over by a takeover: a new router binds https itself (docs/operations.md).
        https_listeners = open_listeners(cfg.listen.https, cfg.listen.backlog, cfg.listen.reuse_port) \
            if cfg.listen.https else []
    except OSError as exc:
        print(f"stamp-router: cannot start: {exc}", file=sys.stderr)
        return 1
    supervisor = Supervisor(start, listeners, admin_listeners, config_path=config_path,
                            https_listeners=https_listeners)
    del start      # it holds the first config: a reload must be able to free that
    try:
        return await supervisor.run(on_serving=handover.release_old if handover is not None else None)
    except ConfigError as exc:
        _print_errors(exc)
        return 1
    except OSError as exc:
        print(f"stamp-router: cannot start: {exc}", file=sys.stderr)
        return 1
