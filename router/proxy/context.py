# cython: annotation_typing=False
"""What every connection and exchange of a worker reads per request, in one typed object.

ProxyServer (router.proxy.server) is this plus the listener's life (accepting, the
deadline sweep, drain). The split is for the compiled build: the data path's modules
declare their server as this class (context.pxd), so each per-request read of the
snapshot, the counters or the request id is a C field access instead of a Python
attribute lookup, and this module imports none of them, so the declarations need no
import cycle.
"""

from __future__ import annotations

import os


class ServerContext:
    __slots__ = ("state", "loop", "clock", "metrics", "access_log", "pools", "holds", "tenant_rate", "tenant_load", "guard",
                 "draining", "retrying", "_rid_prefix", "_rid", "_rr")

    def __init__(self, state, metrics, access_log, loop) -> None:
        self.state = state
        self.metrics = metrics
        self.access_log = access_log
        self.loop = loop
        # The loop's time(), bound once: deadlines read it a few times per request, and a
        # method looked up at each call cost a third of the call.
        self.clock = loop.time
        self.pools = self.holds = self.tenant_rate = self.tenant_load = self.guard = None
        self.draining = False
        self.retrying = 0
        # Request ids are this process's random prefix and a counter: unique without a
        # random draw per request.
        self._rid_prefix = os.urandom(5).hex() + "-"
        self._rid = 0
        self._rr = 0

    def next_request_id(self) -> bytes:
        self._rid += 1
        # An f-string of str, encoded: the compiled build formats the counter in C, where
        # bytes' % formatting is a generic call (two thirds of a request id's cost).
        return f"{self._rid_prefix}{self._rid:x}".encode("ascii")

    def next_rr(self) -> int:
        self._rr += 1
        return self._rr

    def retry_allowed(self, budget: float) -> bool:
        return self.retrying < max(3, budget * self.metrics.in_flight)

    def retry_began(self) -> None:
        """A request went to a second backend: it counts against the budget until it ends."""
        self.retrying += 1

    def retry_ended(self) -> None:
        self.retrying -= 1
