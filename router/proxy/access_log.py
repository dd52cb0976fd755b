"""The access log: one JSON line per request, off by default (admin.access_log).

Lines are buffered and flushed by the server's sweep (or when the buffer is large), so
a request never waits on a write to stdout.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from router.proxy.exchange import Exchange

FLUSH_BYTES = 64 * 1024


class AccessLog:
    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out or sys.stdout.buffer
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
        if self.buf:
            data = b"".join(self.buf)
            self.buf.clear()
            self.size = 0
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                pass  # a closed stdout must not take the data path down
