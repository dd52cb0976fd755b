"""`stamp-router serve`: wires the core, the proxy, health, JWT keys, the admin API and
the control plane (config sources, reloads, last known good).

The `Router` object owns every long-lived part of one router process. It holds no
routing state of its own: that is `state.current`, swapped by `apply()`, which only
router.control's Reloader calls once the router runs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

import uvloop
from aiohttp import web
from prometheus_client import CollectorRegistry

from router.admin.app import build_app
from router.config import ConfigError, ValidConfig
from router.config.addresses import parse_hostport
from router.core.snapshot import Snapshot, build_snapshot
from router.health import HealthRegistry
from router.metrics import ProxyMetrics
from router.proxy.access_log import AccessLog
from router.proxy.server import ProxyServer
from router.state import RouterState

log = logging.getLogger("stamp_router")


class Router:
    def __init__(self, valid: ValidConfig, *, config_path: str | None = None) -> None:
        self.config_path = config_path
        self.control = None           # router.control.ControlPlane, set by serve()
        self.shutting_down = False    # SIGTERM received: grace, then drain
        self.registry = CollectorRegistry()
        self.health = HealthRegistry(self.registry)
        self.jwt = self._jwt_runtime()
        self.initial = valid
        self.state: RouterState | None = None
        self.proxy: ProxyServer | None = None
        self._admin_runner: web.AppRunner | None = None
        self.admin_app: web.Application | None = None
        self.stopping = asyncio.Event()
        self.extra_readiness: dict[str, callable] = {}

    def _jwt_runtime(self):
        try:
            from router.jwt.runtime import JwtRuntime
        except ImportError:
            return None
        return JwtRuntime(self.registry)

    # -- snapshots ---------------------------------------------------------------------
    async def build(self, valid: ValidConfig) -> Snapshot:
        """Everything a config needs before it may serve (keys included), then the snapshot."""
        extra = {}
        if self.jwt is not None:
            await self.jwt.prepare(valid)
            extra["jwt"] = self.jwt.source_factory
        elif "jwt" in valid.config.routing.sources:
            raise ConfigError([("routing.sources", "the jwt source is not available in this build")])
        return build_snapshot(valid, loaded_at=time.time(), extra_sources=extra)

    async def apply(self, valid: ValidConfig) -> Snapshot:
        """Validate-then-swap: a config that cannot be built changes nothing."""
        snap = await self.build(valid)
        self.state.swap(snap)
        return snap

    def config_info(self) -> dict:
        snap = self.state.snapshot
        info = {"version": snap.version, "digest": snap.digest, "source": snap.valid.source,
                "loaded_at": snap.loaded_at, "stamps": len(snap.stamps), "pins": len(snap.pins)}
        if self.control is not None:
            status = self.control.status()
            info.update(lkg=status["lkg"], local_edits=status["local_edits"], last_reload=status.get("last_reload"))
        return info

    def readiness(self) -> dict:
        # Serving the last known good is ready (static stability); `lkg` says it is a fallback.
        config = {"ok": self.state is not None}
        if self.control is not None and self.state is not None:
            config.update(self.control.status())
        jwt = {"ok": self.jwt is None or self.jwt.ready}
        if self.jwt is not None:
            jwt["status"] = self.jwt.status()
        checks = {
            "config": config,
            "health": {"ok": bool(self.health.first_round_done)},
            "jwt_keys": jwt,
            # A draining router says so, so that a load balancer stops sending it traffic.
            "serving": {"ok": not self.shutting_down},
        }
        for name, check in self.extra_readiness.items():
            checks[name] = check()
        return checks

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        valid, self.initial = self.initial, None    # a reload must be able to free it
        snap = await self.build(valid)
        self.state = RouterState(snap, self.health)
        cfg = valid.config
        metrics = ProxyMetrics(self.registry, lambda: self.config_info() if self.state else {})
        self.proxy = ProxyServer(self.state, metrics, AccessLog() if cfg.admin.access_log else None)
        host, port = parse_hostport(cfg.listen.http)
        await self.proxy.start(host, port, cfg.listen.backlog, cfg.listen.reuse_port, cfg.listen.proxy_protocol)
        self.admin_app = build_app(self)
        if self.control is not None:
            self.control.install(self.admin_app)
        self._admin_runner = web.AppRunner(self.admin_app, access_log=None, handle_signals=False)
        await self._admin_runner.setup()
        ahost, aport = parse_hostport(cfg.admin.listen)
        await web.TCPSite(self._admin_runner, ahost, aport, reuse_address=True).start()
        await self.health.start()
        if self.control is not None:
            await self.control.start()
        log.info("serving on %s, admin on %s, config %s", cfg.listen.http, cfg.admin.listen, snap.version)

    async def stop(self) -> None:
        cfg = self.state.snapshot.config
        self.shutting_down = True          # /readyz turns 503 from here on
        if cfg.timeouts.grace > 0:
            await asyncio.sleep(cfg.timeouts.grace)
        if self.control is not None:
            await self.control.close()
        await self.proxy.drain(cfg.timeouts.drain)
        await self.health.close()
        if self.jwt is not None:
            await self.jwt.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Handlers go in before start(): /readyz may answer (and an orchestrator send
        # SIGTERM) as soon as the admin listener is up.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.control is not None:      # SIGHUP's default action would end the process
            loop.add_signal_handler(signal.SIGHUP, self.control.on_sighup)
        await self.start()
        print(f"stamp-router: ready, proxy {self.state.snapshot.config.listen.http}, "
              f"admin {self.state.snapshot.config.admin.listen}", file=sys.stderr, flush=True)
        await self.stopping.wait()
        print("stamp-router: draining", file=sys.stderr, flush=True)
        await self.stop()
        return 0


def _print_errors(exc: ConfigError) -> None:
    print("\n".join(exc.lines()), file=sys.stderr)


def serve(config_path: str) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from router.control import ControlPlane, choose_start
    from router.control.lkg import StateDirInUse
    uvloop.install()

    async def main() -> int:
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
        if unlocked:
            start.warnings.append(unlocked)
        for warning in start.warnings:
            log.warning("%s", warning)
        router = Router(start.valid, config_path=config_path)
        router.control = ControlPlane(router, start)
        del start      # it holds the first config: a reload must be able to free that
        try:
            return await router.run()
        except ConfigError as exc:
            _print_errors(exc)
            return 1
        except OSError as exc:
            print(f"stamp-router: cannot start: {exc}", file=sys.stderr)
            return 1

    return asyncio.run(main())
