"""`[lock] kind = "etcd"`: one active DNS updater among its replicas, elected with a lease.

    campaign   grant a lease of `ttl` seconds; create the lock key with it, only if the
               key does not exist (one etcd transaction). Created: active. Not: watch the
               key and try again when it is deleted (its holder's lease expired or was
               revoked), or after `ttl` at the latest.
    active     refresh the lease every ttl/3. Each refresh that answers moves the end of
               the lease, as this replica knows it, to (time the refresh was *sent* + TTL):
               etcd counts from when it got the refresh, which is later, so the replica's
               end comes first.
    fence      before every write to the DNS server: at least ttl/2 of the lease left by
               that reckoning, and a linearizable read shows the key held by this lease.
               A replica cut off from etcd fails the first test at the latest ttl/2 after
               its last good refresh, so it has stopped writing while its lease still
               stands and nobody else can hold the lock (writes are bounded by the
               provider's timeout: keep it under ttl/2).
    lost       the lease expired or a check failed: stop passes, campaign again.
    release    a clean stop revokes the lease, so a waiting replica takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from router.dns.errors import DnsError
from router.etcd.client import EtcdClient, compare_absent, put_op
from router.etcd.errors import EtcdError, EtcdLeaseLost

log = logging.getLogger("stamp_router.dns")


class NotLeader(DnsError):
    """This replica does not hold the lock (any more): it writes nothing."""

    result = "not_leader"


class EtcdLock:
    def __init__(self, client: EtcdClient, key: bytes, ttl: int, identity: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self.identity = identity
        self.clock = clock
        self.lease: int | None = None
        self.valid_until = 0.0
        self.lost = asyncio.Event()
        self._keeper: asyncio.Task | None = None

    @property
    def held(self) -> bool:
        return self.lease is not None and not self.lost.is_set()

    def remaining(self) -> float:
        return self.valid_until - self.clock() if self.held else 0.0

    async def try_acquire(self) -> int | None:
        """One attempt: None when held now, else the etcd revision it was found taken at."""
        sent = self.clock()
        lease, ttl = await self.client.grant(self.ttl)
        try:
            txn = await self.client.txn([compare_absent(self.key)], [put_op(self.key, self.identity.encode(), lease)])
        except BaseException:
            await _quietly(self.client.revoke(lease))
            raise
        if not txn.succeeded:
            await self.client.revoke(lease)
            return txn.revision
        self.lease, self.valid_until = lease, sent + ttl
        self.lost = asyncio.Event()
        self._keeper = asyncio.get_running_loop().create_task(self._keep())
        log.info("lock %s held by %s (lease %x, ttl %ds): active", self.key.decode(), self.identity, lease, ttl)
        return None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Campaign until this replica holds the lock (True) or `stop` is set (False)."""
        waiting_logged = False
        while not stop.is_set():
            try:
                revision = await self.try_acquire()
                if revision is None:
                    return True
                if not waiting_logged:
                    holder = await self.client.get(self.key)
                    log.info("lock %s is held by %s: standing by", self.key.decode(),
                             holder.value.decode("utf-8", "replace") if holder else "another updater")
                    waiting_logged = True
                await self._wait_for_release(revision, stop)
            except EtcdError as exc:
                log.warning("lock %s: etcd: %s; trying again", self.key.decode(), exc)
                await _sleep_or_stop(stop, min(self.ttl / 3, 2.0))
        return False

    async def _wait_for_release(self, revision: int, stop: asyncio.Event) -> None:
        """Until the key is deleted after `revision`, `stop`, or ttl seconds."""
        async def deleted() -> None:
            async for resp in self.client.watch(self.key, None, revision + 1, progress_notify=False):
                if any(e.deleted for e in resp.events):
                    return
        waiters = [asyncio.ensure_future(deleted()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.ttl, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _keep(self) -> None:
        lease = self.lease
        while not self.lost.is_set():
            await asyncio.sleep(self.ttl / 3)
            sent = self.clock()
            try:
                ttl = await self.client.keepalive(lease)
                self.valid_until = sent + ttl
            except EtcdLeaseLost:
                self._lose("the lease expired")
            except EtcdError as exc:
                if self.clock() >= self.valid_until:
                    self._lose(f"no refresh answered within the ttl ({exc})")
                else:
                    log.warning("lock %s: refresh failed (%s); %.1fs of lease left", self.key.decode(), exc,
                                self.remaining())

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            log.warning("lock %s lost: %s; standing by, writing nothing", self.key.decode(), why)
            self.lost.set()

    async def check(self) -> None:
        """The fence before a write: NotLeader unless this replica surely holds the lock
        for at least ttl/2 more seconds."""
        if not self.held:
            raise NotLeader("this updater does not hold the lock")
        if self.remaining() < self.ttl / 2:
            self._lose(f"{self.remaining():.1f}s of lease left, under ttl/2")
            raise NotLeader("the lock's lease may run out before a write ends")
        try:
            kv = await self.client.get(self.key)
        except EtcdError as exc:
            raise NotLeader(f"cannot confirm the lock: {exc}") from None
        if kv is None or kv.lease != self.lease:
            self._lose("the lock key is gone or held by another lease")
            raise NotLeader("another updater holds the lock")
        if self.remaining() < self.ttl / 2:
            raise NotLeader("the lock's lease may run out before a write ends")

    async def release(self) -> None:
        lease, self.lease = self.lease, None
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        if lease is not None:
            await _quietly(self.client.revoke(lease))
            log.info("lock %s released", self.key.decode())


class FencedProvider:
    """A provider whose every apply first passes the lock's fence; all else is the provider's."""

    def __init__(self, provider, lock: EtcdLock) -> None:
        self._provider = provider
        self.lock = lock

    def __getattr__(self, name: str):
        return getattr(self._provider, name)

    async def apply(self, plan, *, force: bool = False) -> int:
        await self.lock.check()
        return await self._provider.apply(plan, force=force)


async def _quietly(coro) -> None:
    try:
        await coro
    except EtcdError:
        pass


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass

