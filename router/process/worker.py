"""A worker process: the data path only, on the listening sockets the supervisor opened.

A worker is forked from the supervisor holding the snapshot it is to serve, so a table of
a million pins is shared page for page, never parsed or copied per worker. After the fork
it starts a fresh event loop and touches nothing of the supervisor's: the inherited loop
object is abandoned as it is, and the process ends with os._exit so that nothing the
supervisor owns (its loop, its sockets, its files) is finalized from here.

What changes later reaches the worker as messages (router.process.messages): pin edits,
health transitions, rate-limit shares. What the supervisor needs from it goes back as
reports (router.process.reports). The channel closing (the supervisor is gone) or
SIGTERM drains it; PR_SET_PDEATHSIG covers a supervisor killed with -9.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

import uvloop

from router.core.snapshot import Snapshot, build_snapshot
from router.metrics import ProxyMetrics
from router.process import wire
from router.process.health import WorkerHealth
from router.process.messages import Channel, ChannelClosed, Kind, Message
from router.process.reports import REPORT_INTERVAL, ReportKind, Reporters
from router.proxy.access_log import AccessLog
from router.errors import ConfigError
from router.proxy.server import ProxyServer
from router.proxy.tenant_rate import SharedTenantRate
from router.state import RouterState

log = logging.getLogger("stamp_router.worker")

PR_SET_PDEATHSIG = 1
# Collections walk only what the worker allocates itself: everything inherited is frozen
# at start, and requests allocate few cyclic objects.
GC_GEN0_THRESHOLD = 20000
# Exit codes the supervisor reads.
EXIT_OK, EXIT_CRASH, EXIT_OUT_OF_SYNC, EXIT_OVER_MEMORY = 0, 70, 75, 76


@dataclass
class WorkerSpec:
    """What a worker starts from; built by the supervisor just before the fork."""

    slot: int
    generation: int
    snapshot: Snapshot
    listeners: list[socket.socket]
    proxy_protocol: bool
    access_log: bool
    drain_timeout: float
    workers: int                   # in the router: rate limits are shared among them
    routable: dict[str, tuple[str, ...]] = field(default_factory=dict)
    panic: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra_sources: dict[str, Callable] = field(default_factory=dict)
    jwt: Any = None                # the supervisor's JwtRuntime, as forked: verifies only
    # The supervisor's own: the state directory's lock, the admin listener. Closed in the
    # worker, so that neither outlives the supervisor in a worker still draining.
    close_fds: list[int] = field(default_factory=list)
    supervisor_pid: int = 0
    # listen.https: its sockets, and the supervisor's TlsRuntime as forked. Its base SSL
    # context, created before the fork, holds the session ticket keys every worker shares.
    https_listeners: list[socket.socket] = field(default_factory=list)
    redirect_http: bool = False
    tls: Any = None


def run_worker(spec: WorkerSpec, channel_sock: socket.socket) -> NoReturn:
    """The child's side of the fork: never returns."""
    code = EXIT_CRASH
    try:
        _detach(spec.supervisor_pid)
        for fd in spec.close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        gc.freeze()                  # inherited objects stay shared: no collection writes to them
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(Worker(spec, channel_sock).run())
    except BaseException:  # noqa: BLE001 - whatever escapes is printed, and the supervisor replaces us
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _detach(supervisor_pid: int) -> None:
    """Leave the supervisor's loop behind and die with the supervisor."""
    asyncio.events._set_running_loop(None)      # we were forked from inside its loop
    signal.set_wakeup_fd(-1)                    # its wakeup fd is the supervisor's loop's
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    # Ctrl-C reaches the whole process group: the supervisor decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass                                    # not Linux: the channel's EOF still says it
    if os.getppid() != supervisor_pid:          # it died before prctl took effect
        os._exit(EXIT_OK)


class Worker:
    def __init__(self, spec: WorkerSpec, channel_sock: socket.socket) -> None:
        self.spec = spec
        self._channel_sock = channel_sock
        self.health = WorkerHealth(spec.routable, spec.panic, self._send_passive)
        self.state = RouterState(spec.snapshot, self.health)
        self.metrics = ProxyMetrics(None, lambda: {})
        self.reporters: Reporters = {ReportKind.PASSIVE: self.health.take_report}
        self._refetch: set[str] = set()
        if spec.jwt is not None:
            spec.jwt.serve_in_worker(self._refetch.add)
            self.reporters[ReportKind.UNKNOWN_KID] = self._take_refetch
        self.channel: Channel | None = None
        self.proxy: ProxyServer | None = None
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.channel = Channel(self._channel_sock)
        await self.channel.open()
        spec = self.spec
        tls = spec.tls
        if tls is not None:
            tls.adopt(spec.snapshot.config, spec.snapshot.valid.base_dir)   # forked mid-apply: the new pairs
        self.proxy = ProxyServer(self.state, self.metrics, AccessLog() if spec.access_log else None, spec.workers,
                                 upstream_tls=tls.upstream_for if tls is not None else None, tls=tls,
                                 on_memory_stuck=self._over_memory)
        self.reporters[ReportKind.COUNTERS] = self._counters_if_due
        self.reporters[ReportKind.DEMAND] = self._demand
        self._next_counters = 0.0
        await self.proxy.serve(spec.listeners, spec.proxy_protocol, spec.redirect_http, spec.https_listeners)
        self.channel.send(Kind.READY, pid=os.getpid())
        served = loop.create_task(self.channel.serve(self._on_message))
        reporting = loop.create_task(self._report_loop())
        stop = loop.create_task(self.stopping.wait())
        await asyncio.wait([served, stop], return_when=asyncio.FIRST_COMPLETED)
        await self.proxy.drain(spec.drain_timeout)
        reporting.cancel()
        self._send_report(final=True)
        await self.channel.flush()
        return self._exit_code

    _exit_code = EXIT_OK

    def _over_memory(self) -> None:
        """Past limits.max_memory with nothing left to shed (router.core.overload rule 5)."""
        self._exit_code = EXIT_OVER_MEMORY
        self.stopping.set()

    # -- messages from the supervisor -------------------------------------------------
    def _on_message(self, kind: Kind, msg: Message) -> Any:
        if kind is Kind.PINS:
            self._apply_pins(msg)
        elif kind is Kind.CONFIG:
            valid = wire.load(msg["config"])
            tls = self.spec.tls
            if tls is not None:
                try:
                    tls.prepare(valid)
                except ConfigError as exc:
                    # The supervisor read these files a moment ago; a worker that cannot
                    # is out of step with it, and is replaced.
                    log.error("worker %d cannot load the config's TLS files: %s", self.spec.slot, exc)
                    self._exit_code = EXIT_OUT_OF_SYNC
                    self.stopping.set()
                    return
            self.state.swap(build_snapshot(valid, loaded_at=msg["at"], extra_sources=self.spec.extra_sources))
            if tls is not None:
                tls.adopt(valid.config, valid.base_dir)
            self.channel.answer(msg, digest=valid.digest)
        elif kind is Kind.KEYS:
            if self.spec.jwt is not None:
                self.spec.jwt.set_keys(msg["holder"], wire.load_keys(msg["keys"]))
        elif kind is Kind.HEALTH:
            self.health.update(msg["routable"], msg["panic"])
        elif kind is Kind.SHARES:
            limiter = self.proxy.tenant_rate
            if isinstance(limiter, SharedTenantRate):
                limiter.shares.update(msg["shares"])
                for tenant in msg["forget"]:
                    limiter.shares.pop(tenant, None)
        elif kind is Kind.COLLECT:
            self.channel.answer(msg, counters=self.metrics.export(self.health))
        elif kind is Kind.TENANT:
            tenant = msg["tenant"]
            if msg.get("close_tunnels"):
                self.proxy.tenant_load.close_tunnels(tenant)
            self.channel.answer(msg, stamps=self.proxy.tenant_load.of(tenant), held=self.proxy.holds.of(tenant))
        elif kind is Kind.DRAIN:
            # Answered once this worker accepts no more: a new generation's supervisor
            # answers a config change only then, so the next connection sees the change.
            self.proxy.stop_accepting()
            if "id" in msg:
                self.channel.answer(msg)
            self.stopping.set()
        elif kind is Kind.CERTS:
            # The supervisor watches the files; the contexts are this process's own since
            # the fork, so it rereads them itself.
            if self.spec.tls is not None:
                self.spec.tls.reload_files(msg.get("why", "SIGHUP"))

    def _apply_pins(self, msg: Message) -> None:
        """A pin edit on top of the snapshot served: the same edit the supervisor made, on
        the same base, so the result has the digest the supervisor computed."""
        from router.control.pins import apply_op     # noqa: PLC0415 - pure function, no IO
        current = self.state.snapshot
        if current.digest != msg["after"]:
            if current.digest != msg["before"]:
                log.error("worker %d serves %s, a pin edit came for %s: out of step, exiting to be replaced",
                          self.spec.slot, current.digest[:12], msg["before"][:12])
                self._exit_code = EXIT_OUT_OF_SYNC
                self.stopping.set()
                return
            valid = apply_op(current.valid, msg["op"], base_version=msg["base"], edits=msg["edits"],
                             label=msg["label"])
            self.state.swap(build_snapshot(valid, loaded_at=msg["at"], extra_sources=self.spec.extra_sources))
        self.channel.answer(msg, digest=self.state.snapshot.digest)

    # -- reports to the supervisor ----------------------------------------------------
    def _take_refetch(self) -> Any:
        if not self._refetch:
            return None
        out = sorted(self._refetch)
        self._refetch.clear()
        return out

    def _demand(self) -> Any:
        limiter = self.proxy.tenant_rate
        return limiter.take_demand() if isinstance(limiter, SharedTenantRate) else None

    def _counters_if_due(self) -> Any:
        now = time.monotonic()
        if now < self._next_counters:
            return None
        self._next_counters = now + 1.0
        return {**self.metrics.export(self.health), "slot": self.spec.slot}

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            self._send_report()

    def _send_passive(self) -> None:
        outcomes = self.health.take_report()
        if outcomes and self.channel is not None and not self.channel.closed:
            self.channel.send(Kind.REPORT, r={ReportKind.PASSIVE: outcomes})

    def _send_report(self, final: bool = False) -> None:
        if final:
            self._next_counters = 0.0
        payload = {}
        for kind, reporter in self.reporters.items():
            value = reporter()
            if value is not None:
                payload[kind] = value
        if payload and self.channel is not None and not self.channel.closed:
            try:
                self.channel.send(Kind.REPORT, r=payload)
            except ChannelClosed:
                pass
