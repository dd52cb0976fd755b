"""A connection's writes held until the event loop has run every callback of its wake-up.

A write to a peer that sleeps wakes it, and when the peer's CPU is idle that wake-up is an
interrupt which costs the writer more system time than the write itself (measured:
benchmarks/README.md, "Kernel time"). Writing everything one wake-up produced back to
back, in one callback after the others, wakes each peer once for the lot instead of once
per write. The delay is bounded by the wake-up's own work: nothing waits for a timer.

Every call on a connection's transport goes through its BatchedTransport, so the bytes
keep their order and nothing (close, a pause, a buffer-size check) overtakes them.
"""

from __future__ import annotations

import asyncio
import weakref

_BATCHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class WriteBatch:
    """The transports of one event loop holding writes until the loop's next callback."""

    __slots__ = ("loop", "waiting", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[BatchedTransport] = []

    def add(self, transport: BatchedTransport) -> None:
        if not self.waiting:
            self.loop.call_soon(self.flush)
        self.waiting.append(transport)

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            transport.flush()


def batch_for(loop: asyncio.AbstractEventLoop) -> WriteBatch:
    batch = _BATCHES.get(loop)
    if batch is None:
        batch = _BATCHES[loop] = WriteBatch(loop)
    return batch


class BatchedTransport:
    """A transport whose writes wait for the batch; any other call sends them first."""

    __slots__ = ("transport", "batch", "held")

    def __init__(self, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self.transport = transport
        self.batch = batch
        self.held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        held = self.held
        if held is None:
            self.held = [data]
            self.batch.add(self)
        else:
            held.append(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def abort(self) -> None:
        self.held = None          # abort discards what is not sent yet, held bytes too
        self.transport.abort()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self.transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    def get_extra_info(self, name: str, default=None):
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self):
        return self.transport.get_protocol()
