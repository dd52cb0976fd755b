"""`stamp-router dns sync -c DNSCONFIG [--once] [--dry-run] [--force]`.

Exit codes: 0 the pass (or the loop, ended by SIGINT/SIGTERM) went well; 1 an error (bad
config, registry or DNS server unreadable, a write refused or not read back, a plan
against the provider's rules); 2 the plan was refused as unsafe (over
max_change_fraction) and --force was not given. A dry run exits 2 too when the plan it
prints would be refused.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from router.dns.config import load_dns_config
from router.dns.metrics import DnsMetrics, start_server
from router.dns.providers import make_provider
from router.dns.registry import make_registry
from router.dns.sync import EXIT_ERROR, EXIT_OK, Updater
from router.errors import ConfigError

log = logging.getLogger("stamp_router.dns")


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build(config_path: str, *, always_print: bool) -> Updater:
    cfg = load_dns_config(config_path)
    provider = make_provider(cfg)
    return Updater(cfg, provider, make_registry(cfg.source), metrics=DnsMetrics(),
                   always_print=always_print)


async def _loop(updater: Updater, *, dry_run: bool, force: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    listen = updater.cfg.metrics.listen
    try:
        if listen:
            try:
                runner = await start_server(listen, updater.metrics)
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", listen, exc.strerror or exc)
                return EXIT_ERROR
        log.info("dns sync: %s every %gs, owner %s", updater.provider.describe(),
                 updater.cfg.sync.interval, updater.cfg.sync.owner_id)
        await updater.run(dry_run=dry_run, force=force, stop=stop)
        return EXIT_OK
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await updater.provider.close()


async def _once(updater: Updater, *, dry_run: bool, force: bool) -> int:
    try:
        result = await updater.sync_once(dry_run=dry_run, force=force)
    finally:
        await updater.provider.close()
    return result.exit_code


def run(args) -> int:
    _setup_logging()
    try:
        updater = build(args.config, always_print=args.once)
    except ConfigError as exc:
        for path, message in exc.errors:
            print(f"{args.config}: {path or '(document)'}: {message}", file=sys.stderr)
        return EXIT_ERROR
    if args.once:
        return asyncio.run(_once(updater, dry_run=args.dry_run, force=args.force))
    return asyncio.run(_loop(updater, dry_run=args.dry_run, force=args.force))
