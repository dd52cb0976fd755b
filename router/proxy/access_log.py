"""The access log: one JSON line per request, off by default (admin.access_log).

Lines are buffered and flushed by the server's sweep (or when the buffer is large), so
a request never waits on a write to stdout.

Every worker writes to the same stdout. Each write(2) carries whole lines and at most
PIPE_BUF bytes, which POSIX makes atomic on a pipe, so the lines of all workers reach
the stream whole (a single line longer than PIPE_BUF goes in a write of its own; on a
pipe it could then interleave with another worker's). A regular file opened for append
takes each write whole at any size.
"""

from __future__ import annotations

import os
import select
import time
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from router.proxy.exchange import Exchange

FLUSH_BYTES = 64 * 1024
PIPE_BUF = select.PIPE_BUF


class AccessLog:
    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.buf: list[bytes] = []
        self.size = 0

    def write(self, ex: Exchange, elapsed: float) -> None:
        d = ex.decision
        line = orjson.dumps({
            "time": time.time(),
            "request_id": (ex.request_id or b"-").decode("latin-1"),
            "client": ex.client,
            "method": ex.method,
            "path": ex.url.decode("latin-1"),
            "tenant": d.tenant if d is not None else None,
            "tenant_source": d.source if d is not None else None,
            "stamp": d.stamp if d is not None else None,
            "failover_from": d.placed if d is not None and d.stamp is not None else None,
            "backend": ex.backend,
            "status": ex.status,
            "bytes_in": ex.body_in,
            "bytes_out": ex.bytes_out,
            "upstream_duration": round(time.perf_counter() - ex.t_up, 6) if ex.t_up else None,
            "duration": round(elapsed, 6),
        }) + b"\n"
        self.buf.append(line)
        self.size += len(line)
        if self.size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        lines, self.buf, self.size = self.buf, [], 0
        chunk: list[bytes] = []
        size = 0
        try:
            for line in lines:
                if chunk and size + len(line) > PIPE_BUF:
                    _write_all(self.fd, b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                _write_all(self.fd, b"".join(chunk))
        except OSError:
            pass  # a closed stdout must not take the data path down


def _write_all(fd: int, data: bytes) -> None:
    # A blocking stdout takes a write of PIPE_BUF or less whole; a short write is only
    # possible beyond that (one long line), and then the rest follows.
    while data:
        data = data[os.write(fd, data):]
