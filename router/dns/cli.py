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
import os
import signal
import socket
import sys

from router.etcd.layout import Layout, client_for
from router.dns.config import load_dns_config
from router.dns.counts import EtcdCounts, FileCounts, default_path
from router.dns.lock import EtcdLock, FencedProvider
from router.dns.metrics import DnsMetrics, start_server
from router.dns.providers import make_provider
from router.dns.registry import make_registry
from router.dns.sync import EXIT_ERROR, EXIT_OK, Updater
from router.errors import ConfigError
from router.etcd.errors import EtcdError

log = logging.getLogger("stamp_router.dns")


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build(config_path: str, *, always_print: bool) -> Updater:
    cfg = load_dns_config(config_path)
    provider = make_provider(cfg)
    if cfg.lock is not None:
        lock = make_lock(cfg, os.path.dirname(os.path.abspath(config_path)))
        provider = FencedProvider(provider, lock)
        counts = EtcdCounts(lock.client, Layout(cfg.lock.etcd.prefix).dns_state_key(_lock_name(cfg)), lock.key,
                            lambda: lock.lease if lock.held else None)
    else:
        counts = FileCounts(cfg.sync.state_file or default_path(config_path, cfg.sync.owner_id))
    return Updater(cfg, provider, make_registry(cfg.source), metrics=DnsMetrics(),
                   always_print=always_print, counts=counts)


def _lock_name(cfg) -> str:
    return cfg.lock.name or cfg.sync.owner_id


def make_lock(cfg, base_dir: str) -> EtcdLock:
    lock = cfg.lock
    try:
        client = client_for(lock.etcd, lambda p: os.path.join(base_dir, os.path.expanduser(p)))
    except OSError as exc:
        raise ConfigError([("lock.etcd.password_file", f"cannot read it: {exc.strerror}")]) from None
    key = Layout(lock.etcd.prefix).dns_lock_key(_lock_name(cfg))
    return EtcdLock(client, key, lock.ttl, lock.identity or f"{socket.gethostname()}:{os.getpid()}")


def _lock_of(updater: Updater) -> EtcdLock | None:
    return updater.provider.lock if isinstance(updater.provider, FencedProvider) else None


async def _led(updater: Updater, lock: EtcdLock, stop: asyncio.Event, *, dry_run: bool, force: bool) -> None:
    """Passes only while this replica holds the lock; campaign again when it is lost."""
    try:
        while await lock.acquire(stop):
            halt = asyncio.Event()
            watchers = [asyncio.ensure_future(e.wait()) for e in (stop, lock.lost)]
            for w in watchers:
                w.add_done_callback(lambda _: halt.set())
            try:
                await updater.run(dry_run=dry_run, force=force, stop=halt)
            finally:
                for w in watchers:
                    w.cancel()
            if stop.is_set():
                break
            await lock.release()
    finally:
        await lock.release()
        await lock.client.close()


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
        lock = _lock_of(updater)
        if lock is not None and not dry_run:
            await _led(updater, lock, stop, dry_run=dry_run, force=force)
        else:
            await updater.run(dry_run=dry_run, force=force, stop=stop)
        return EXIT_OK
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await updater.provider.close()


async def _once(updater: Updater, *, dry_run: bool, force: bool) -> int:
    lock = _lock_of(updater)
    try:
        if lock is not None and not dry_run:
            # One pass, if no other replica is active: --once never waits its turn.
            try:
                taken_at = await lock.try_acquire()
            except EtcdError as exc:
                log.error("dns sync: cannot take the lock: etcd: %s", exc)
                return EXIT_ERROR
            if taken_at is not None:
                holder = await _quiet_get(lock)
                log.error("dns sync: another updater (%s) holds the lock %s; nothing done", holder, lock.key.decode())
                return EXIT_ERROR
        result = await updater.sync_once(dry_run=dry_run, force=force)
    finally:
        if lock is not None:
            await lock.release()
            await lock.client.close()
        await updater.provider.close()
    return result.exit_code


async def _quiet_get(lock: EtcdLock) -> str:
    try:
        kv = await lock.client.get(lock.key)
    except EtcdError:
        return "unknown"
    return kv.value.decode("utf-8", "replace") if kv else "gone since"


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
