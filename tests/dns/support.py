"""Helpers for the DNS tests: run a coroutine, ask a server, write behind the updater's back."""

from __future__ import annotations

import asyncio
import contextlib
import io
from types import SimpleNamespace

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
from aiohttp import web

from router.dns.providers import make_provider
from router.dns.providers.base import Provider, diff_sets
from router.dns.sync import Updater
from tests.dns.servers import ZONE


def run(coro):
    return asyncio.run(coro)


def answers(server, name: str, rtype: str) -> set[str]:
    """What the server answers for name/type over UDP, as presentation strings."""
    fqdn = name if name.endswith(".") else f"{name}.{ZONE}"
    response = dns.query.udp(dns.message.make_query(fqdn, rtype), "127.0.0.1", port=server.port, timeout=3)
    assert response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN), dns.rcode.to_text(response.rcode())
    wanted = dns.rdatatype.from_text(rtype)
    return {rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset}


def raw_update(server, build) -> None:
    """Send a signed UPDATE that `build(msg)` fills in: someone else writing to the zone."""
    keyring = dns.tsigkeyring.from_file(server.key_file)
    msg = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=next(iter(keyring)))
    build(msg)
    response = dns.query.tcp(msg, "127.0.0.1", port=server.port, timeout=3)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())


def updater(cfg, registry, **kwargs) -> Updater:
    kwargs.setdefault("out", io.StringIO())
    return Updater(cfg, make_provider(cfg), registry, **kwargs)


async def sync(upd: Updater, **kwargs):
    try:
        return await upd.sync_once(**kwargs)
    finally:
        await upd.provider.close()


def sync_once(upd: Updater, **kwargs):
    return run(sync(upd, **kwargs))


class MemoryProvider(Provider):
    """A provider over a dict, for safety tests without a server. `lose_writes` makes it
    answer success while keeping nothing, like a server ignoring an update."""

    kind = "memory"

    def __init__(self, zone: str = ZONE, records=()) -> None:
        super().__init__(SimpleNamespace(zone=zone))
        self.held = {r.ident: r for r in records}
        self.lose_writes = False
        self.writes = 0

    def describe(self) -> str:
        return f"memory zone {self.zone}"

    async def _read_records(self):
        return list(self.held.values())

    async def _apply(self, changes) -> None:
        await self._assert_unchanged(changes)
        self.writes += 1
        if self.lose_writes:
            return
        for change in changes:
            for old, new in diff_sets(change):
                if old is not None:
                    del self.held[old.ident]
                if new is not None:
                    self.held[new.ident] = new


@contextlib.asynccontextmanager
async def serve_app(app: web.Application):
    """Run an aiohttp app on 127.0.0.1 and a free port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
