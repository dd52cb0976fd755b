# cython: annotation_typing=False
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

# Bytes a transport holds before they go out at once. uvloop reads a readable socket up to
# 32 times in one wake-up: a body streamed through must reach the write buffer as it comes,
# so that its flow control (pause_writing) stops the reads at the usual high-water mark
# instead of after the wake-up. 64 KiB is asyncio's default high-water mark.
HOLD_LIMIT = 64 * 1024


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

    __slots__ = ("transport", "batch", "held", "held_bytes")

    def __init__(self, transport: asyncio.Transport, batch: WriteBatch) -> None:
        self.transport = transport
        self.batch = batch
        self.held: list[bytes] | None = None
        self.held_bytes = 0

    def write(self, data: bytes) -> None:
        held = self.held
        if held is None:
            if len(data) >= HOLD_LIMIT:
                self.transport.write(data)
                return
            self.held = [data]
            self.held_bytes = len(data)
            self.batch.add(self)
        else:
            held.append(data)
            self.held_bytes += len(data)
            if self.held_bytes >= HOLD_LIMIT:
                self.flush()

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
