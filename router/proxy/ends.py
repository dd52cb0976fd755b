# cython: annotation_typing=False
"""The two ends an exchange works with, as the exchange sees them.

ClientConnection (router.proxy.downstream) and UpstreamConnection (router.proxy.upstream)
extend these. The split is for the compiled build: both modules declare Exchange in
their .pxd, so exchange.pxd cannot declare them back (each module's types are fetched at
import time: an import cycle). It declares these instead, which import neither, and the
compiled exchange then reads the fields and calls the methods below as C.
"""

from __future__ import annotations


class ClientEnd:
    """What an exchange reads and calls on its client connection per request."""

    # server: the exchange takes its snapshot and counters from the connection's server
    # when it begins.
    __slots__ = ("server", "transport", "closed", "flow", "client_b", "scheme", "forwarded")

    def exchange_done(self, ex, aborted: bool) -> None:
        """`ex` has ended (answered, refused or cut short)."""
        raise NotImplementedError


class UpstreamEnd:
    """What an exchange calls on the backend connection that carries it."""

    __slots__ = ("transport",)

    def serve(self, ex) -> None:
        """Carry `ex` from now on."""
        raise NotImplementedError

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection."""
        raise NotImplementedError
