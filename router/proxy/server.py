# cython: annotation_typing=False
"""The proxy listener: accepts client connections and keeps the shared per-process state
of the data path (pools, counters, the deadline sweep, graceful drain)."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Coroutine

from router.metrics import ProxyMetrics
from router.proxy.access_log import AccessLog
from router.proxy.context import ServerContext
from router.proxy.downstream import ClientConnection, ProxiedConnection
from router.proxy.overload import MemoryGuard
from router.proxy.hold import HoldQueues
from router.proxy.tenant_load import TenantLoad
from router.proxy.tenant_rate import tenant_rate_for
from router.proxy.tls import RedirectConnection, serve_https
from router.proxy.upstream import Pools
from router.state import RouterState

# How often deadlines are checked: timeouts fire within this much of their value.
SWEEP_INTERVAL = 0.25
# A drain lets keep-alive connections waiting for their next request send it for this
# long (bounded by timeouts.drain): it is answered with Connection: close, so a busy client
# moves to a new connection without a failed request. Closing them at once, as nginx
# does, fails the request of a client that sends as the close happens: up to 14 of wrk's
# 32 connections in one measured takeover. Those still idle afterwards are closed.
DRAIN_IDLE_GRACE = 1.0


class ProxyServer(ServerContext):
    def __init__(self, state: RouterState, metrics: ProxyMetrics, access_log: AccessLog | None = None,
                 workers: int = 1, upstream_tls=None, tls=None,
                 on_memory_stuck: Callable[[], None] | None = None) -> None:
        super().__init__(state, metrics, access_log, asyncio.get_running_loop())
        self._on_memory_stuck = on_memory_stuck    # the worker's: exit to be replaced (overload rule 5)
        cfg = state.snapshot.config
        self.pools = Pools(cfg.upstream.max_idle_per_backend, cfg.upstream.idle_timeout, self.loop)
        # snapshot -> {backend: UpstreamTls} ([stamps.tls], router.tls.upstream)
        self.upstream_tls = upstream_tls or (lambda snap: {})
        self.pools.sync(set(), self.pools.max_idle, self.pools.idle_timeout, self.upstream_tls(state.snapshot))
        self.max_connections = cfg.listen.max_connections
        self.workers = workers            # of the router: the limits are shared among them
        self.tenant_rate = tenant_rate_for(cfg.limits.tenant_rate, cfg.limits.tenant_burst, None, workers)
        self.connections: set[ClientConnection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._https: list[asyncio.Task] = []
        self.tls = tls                   # router.tls.runtime.TlsRuntime, with listen.https
        self.tls_handshake_timeout = cfg.timeouts.tls_handshake
        self.https_port = 443            # where listen.redirect_http points
        self._sweeper: asyncio.Task | None = None
        self._accepting: tuple = ()      # what serve() accepts on, to stop and resume (overload)
        self.guard = MemoryGuard(self)   # limits.max_memory
        self.tenant_load = TenantLoad()
        self.holds = HoldQueues(self.loop, metrics, workers, time.monotonic)
        state.on_swap(self._adopt)
        state.on_swap(self.holds.on_swap)

    # -- shared helpers used by connections --------------------------------------------
    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Create a background task and keep a reference until it ends."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def admit(self, conn: ClientConnection) -> bool:
        # Not refused for draining: a connection made now was accepted before the listener
        # closed (uvloop calls connection_made one callback after the accept), and its
        # request may be in already; refusing it would reset that request. It is answered
        # with Connection: close like any other during a drain.
        if len(self.connections) >= self.max_connections:
            self.metrics.connections_refused += 1
            return False
        self.connections.add(conn)
        self.metrics.open_connections = len(self.connections)
        return True

    def release(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.metrics.open_connections = len(self.connections)

    def _adopt(self, snapshot) -> None:
        cfg = snapshot.config
        backends = {b for s in snapshot.stamps.values() for b in s.backends}
        self.pools.sync(backends, cfg.upstream.max_idle_per_backend, cfg.upstream.idle_timeout,
                        self.upstream_tls(snapshot))
        self.max_connections = cfg.listen.max_connections
        self.tenant_rate = tenant_rate_for(cfg.limits.tenant_rate, cfg.limits.tenant_burst, self.tenant_rate,
                                           self.workers)
        self.tls_handshake_timeout = cfg.timeouts.tls_handshake

    # -- lifecycle ---------------------------------------------------------------------
    async def serve(self, listeners: list, proxy_protocol: bool = False, redirect: bool = False,
                    https_listeners: list = ()) -> None:
        """Accept on listening sockets opened elsewhere (router.process.listeners): the
        supervisor keeps them open, so this server closing never resets a queued connection.
        `https_listeners` are accepted on by router.proxy.tls, with self.tls."""
        connection = RedirectConnection if redirect else ProxiedConnection if proxy_protocol else ClientConnection
        self._accepting = (connection, listeners, https_listeners)
        await self._accept()
        self._sweeper = self.loop.create_task(self._sweep())

    async def _accept(self) -> None:
        connection, listeners, https_listeners = self._accepting
        # A duplicate of each socket: closing a server closes the socket it was given, and
        # the memory guard stops and resumes accepting (the listener itself stays open).
        self._servers = [await self.loop.create_server(lambda: connection(self), sock=sock.dup())
                         for sock in listeners]
        for sock in https_listeners:
            self.https_port = sock.getsockname()[1]
            self._https.append(self.loop.create_task(serve_https(self, sock)))

    def pause_accepting(self) -> None:
        """Overloaded: leave new connections in the listen queue (another worker, or this one
        once recovered, takes them), and close keep-alive connections waiting for their
        next request: what they hold is given back."""
        for server in self._servers:
            server.close()
        for accepting in self._https:
            accepting.cancel()
        self._servers, self._https = [], []
        for conn in list(self.connections):
            conn.close_if_idle()

    def resume_accepting(self) -> None:
        if not self.draining and not self._servers and self._accepting:
            self.spawn(self._accept())

    def memory_stuck(self) -> None:
        if self._on_memory_stuck is not None:
            self._on_memory_stuck()

    @property
    def sockets(self):
        return [sock for server in self._servers for sock in server.sockets]

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep_once(self.loop.time())

    def _sweep_once(self, now: float) -> None:
        # A function of its own: a loop variable left in the coroutine's frame would keep
        # the last connection checked (and all it holds) alive after it closed.
        for conn in list(self.connections):
            conn.check_deadline(now)
        self.pools.sweep(now)
        if self.access_log is not None:
            self.access_log.flush()
        self.guard.check(now)

    def stop_accepting(self) -> None:
        """The first step of a drain; idempotent."""
        self.draining = True
        for server in self._servers:
            server.close()
        for accepting in self._https:
            accepting.cancel()

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        self.stop_accepting()
        self.holds.refuse_all()          # held requests would only wait out the drain: 503 now
        # Connections accepted in this wake-up are made by callbacks already queued: let
        # them run, or a drain that finds no connection would exit under them.
        await asyncio.sleep(0)
        deadline = self.loop.time() + timeout
        idle_until = self.loop.time() + min(timeout, DRAIN_IDLE_GRACE)
        while self.connections and self.loop.time() < idle_until:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close_if_idle()
        while self.loop.time() < deadline and any(c.in_use for c in self.connections):
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.pools.close()
        if self.access_log is not None:
            self.access_log.flush()
