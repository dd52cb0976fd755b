"""Where the hysteresis counts live between passes, `--once` runs and replicas.

    [lock] set           -> etcd, PREFIX/dns-state/NAME beside the lock key: a replica
                            taking over reads the counts the active one left; written
                            only in a transaction that holds while the lock key is this
                            replica's lease (a replica that lost the lock writes nothing)
    sync.state_file set  -> that file (JSON, replaced whole)
    neither              -> state/dns-OWNER_ID.json beside the config file (default_path)
    a library caller     -> ProcessCounts: this process's memory (the in-memory tests)

A pass loads the counts at its start and saves the next ones before it writes the zone.
A store that cannot be read (other than "nothing saved yet") or written ends the pass with
`state_error` before anything is written: a count silently lost would remove a stamp at
its first bad read, or keep counting from zero forever under cron.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol

import orjson

from router.dns import hysteresis
from router.dns.errors import DnsError
from router.dns.files import write_atomic
from router.dns.lock import NotLeader
from router.etcd.client import EtcdClient, compare_lease, put_op
from router.etcd.errors import EtcdError

Memory = dict[str, hysteresis.StampMemory]


class StateError(DnsError):
    """The hysteresis counts cannot be read or kept: the pass writes nothing."""

    result = "state_error"


class Counts(Protocol):
    def describe(self) -> str: ...

    async def load(self) -> Memory: ...

    async def save(self, memory: Memory) -> None: ...


def default_path(config_path: str, owner_id: str) -> str:
    """`state/dns-OWNER_ID.json` in the config file's directory: the router's state
    directory default, so one `state/` holds both."""
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), "state", f"dns-{owner_id}.json")


def _encode(memory: Memory) -> bytes:
    return orjson.dumps(hysteresis.to_json(memory), option=orjson.OPT_INDENT_2)


def _decode(data: bytes, where: str) -> Memory:
    try:
        return hysteresis.from_json(orjson.loads(data))
    except orjson.JSONDecodeError as exc:
        raise StateError(f"the hysteresis counts in {where} are not JSON ({exc}): "
                         "fix or delete it to count from scratch") from None


class ProcessCounts:
    def __init__(self) -> None:
        self._memory: Memory = {}

    def describe(self) -> str:
        return "process memory"

    async def load(self) -> Memory:
        return dict(self._memory)

    async def save(self, memory: Memory) -> None:
        self._memory = dict(memory)


class FileCounts:
    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return self.path

    async def load(self) -> Memory:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"cannot read the hysteresis counts in {self.path}: {exc.strerror}") from None
        return _decode(data, self.path)

    async def save(self, memory: Memory) -> None:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            write_atomic(self.path, _encode(memory), 0o600)
        except OSError as exc:
            hint = " (set sync.state_file to a writable place)" if exc.errno in (errno.EACCES, errno.EROFS) else ""
            raise StateError(f"cannot keep the hysteresis counts in {self.path}: {exc.strerror}{hint}") from None


class EtcdCounts:
    """Counts beside the lock, fenced by it: `lease` says whose lease must hold `lock_key`."""

    def __init__(self, client: EtcdClient, key: bytes, lock_key: bytes, lease) -> None:
        self.client = client
        self.key = key
        self._lock_key = lock_key
        self._lease = lease             # a callable: the lease held now, or None

    def describe(self) -> str:
        return f"etcd {self.key.decode()}"

    async def load(self) -> Memory:
        try:
            kv = await self.client.get(self.key)
        except EtcdError as exc:
            raise StateError(f"cannot read the hysteresis counts from etcd {self.key.decode()}: {exc}") from None
        return _decode(kv.value, f"etcd {self.key.decode()}") if kv is not None else {}

    async def save(self, memory: Memory) -> None:
        lease = self._lease()
        if lease is None:
            raise NotLeader("this updater does not hold the lock: it keeps no counts")
        try:
            txn = await self.client.txn([compare_lease(self._lock_key, lease)], [put_op(self.key, _encode(memory))])
        except EtcdError as exc:
            raise StateError(f"cannot keep the hysteresis counts in etcd {self.key.decode()}: {exc}") from None
        if not txn.succeeded:
            raise NotLeader(f"another updater holds the lock: the counts in etcd {self.key.decode()} are its own")
