"""The supervisor and a worker talk over one Unix socketpair: length-prefixed orjson
messages, each `{"k": <Kind>, ...}`.

A message that wants an answer carries an `id`; the answer carries `re` with that id
(`Channel.request`). Everything else is one-way. The socketpair closing is how either side
learns the other is gone: a worker that reads EOF drains and exits, and the supervisor
notices a worker's death by its pidfd and the EOF together.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
from typing import Any, Awaitable, Callable

import orjson

HEADER = struct.Struct("!I")
# A message larger than this is a bug or a corrupted stream, not a large table: tables
# reach workers by fork, never through the channel.
MAX_MESSAGE = 64 * 1024 * 1024


class Kind(enum.StrEnum):
    # supervisor -> worker
    PINS = "pins"            # a pin edit to apply on top of the snapshot served (answered)
    CONFIG = "config"        # a whole validated config with a small table (answered)
    HEALTH = "health"        # stamp -> routable backends, stamps in panic
    KEYS = "keys"            # a JWT key holder's new key set
    SHARES = "shares"        # rate-limit shares: tenant -> this worker's share of tenant_rate
    COLLECT = "collect"      # the worker's counters, now (answered)
    TENANT = "tenant"        # one tenant's work in flight by stamp, its held requests; may close its tunnels (answered)
    DRAIN = "drain"          # stop accepting, finish what is in flight, exit (answered, when asked, once not accepting)
    CERTS = "certs"          # reread the TLS certificate, key and CA files (they changed, or SIGHUP)
    # worker -> supervisor
    READY = "ready"          # accepting on the shared listeners
    REPORT = "report"        # periodic: {report kind: payload}, see router.process.reports


Message = dict[str, Any]
Handler = Callable[[Kind, Message], Awaitable[Any] | Any]


class ChannelClosed(ConnectionError):
    """The other side is gone."""


class Channel:
    """One end of the socketpair, on the running loop."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._early: list[bytes] = []       # sent before the streams were open
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future] = {}
        self.closed = False

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock, limit=MAX_MESSAGE)
        for frame in self._early:
            self._writer.write(frame)
        self._early.clear()

    def _write(self, frame: bytes) -> None:
        if self.closed:
            raise ChannelClosed("channel closed")
        data = HEADER.pack(len(frame)) + frame
        if self._writer is None:
            self._early.append(data)
        else:
            self._writer.write(data)

    def send(self, kind: Kind, **body: Any) -> None:
        self._write(orjson.dumps({"k": kind, **body}, option=orjson.OPT_NON_STR_KEYS))

    async def flush(self) -> None:
        if self._writer is not None and not self.closed:
            await self._writer.drain()

    async def request(self, kind: Kind, timeout: float, **body: Any) -> Message:
        """Send and wait for the answer; ChannelClosed or TimeoutError if none comes."""
        self._next_id += 1
        ident = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._waiting[ident] = fut
        try:
            self.send(kind, id=ident, **body)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(ident, None)

    def answer(self, msg: Message, **body: Any) -> None:
        if not self.closed:
            self._write(orjson.dumps({"re": msg["id"], **body}, option=orjson.OPT_NON_STR_KEYS))

    async def serve(self, handler: Handler) -> None:
        """Read until EOF: answers complete their request, other messages go to `handler`."""
        if self._reader is None:
            await self.open()
        try:
            while True:
                try:
                    head = await self._reader.readexactly(HEADER.size)
                    (size,) = HEADER.unpack(head)
                    if size > MAX_MESSAGE:
                        raise ChannelClosed(f"message of {size} bytes")
                    msg = orjson.loads(await self._reader.readexactly(size))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if "re" in msg:
                    fut = self._waiting.get(msg["re"])
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                result = handler(Kind(msg["k"]), msg)
                if asyncio.iscoroutine(result):
                    await result
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ChannelClosed("the other side is gone"))
        if self._writer is not None:
            self._writer.close()
        else:
            self._sock.close()
