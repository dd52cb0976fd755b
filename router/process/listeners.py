"""The proxy's listening sockets, opened by the supervisor and held by it for its life.

The plain-HTTP listener is one *set* of sockets per worker slot (a set: one socket per
address `listen.http` resolves to), all bound to the same port with SO_REUSEPORT, so
that the kernel spreads new connections evenly over the slots by their addresses. A
single socket shared by every worker leaves that to whichever worker wakes first, and
uvloop then accepts everything queued: 64 keep-alive connections opened at once went
64 to 0 to one of 2 workers in a measured run, against 34 to 30 with a socket per worker
(docs/operations.md, "Accept balance").

The supervisor holds every set open, and the worker serving a slot inherits that slot's
set across fork (a new router taking over receives them all with SCM_RIGHTS). A worker
that exits, crashes or is replaced therefore never closes a listening socket: the
connections in its set's accept queue wait there for its replacement, which accepts on
the same set. Closing an SO_REUSEPORT listener, by contrast, would reset what sits in
its queue, which is why no set is closed while the router runs, not even when a reload
lowers the worker count: a worker then serves several sets.

The admin and https listeners are one shared set (open_listeners).
"""

from __future__ import annotations

import logging
import socket

from router.config.addresses import parse_hostport

log = logging.getLogger("stamp_router.supervisor")


def open_listeners(address: str, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Bind and listen on every address `address` resolves to (as asyncio's create_server
    would: "localhost" may be 127.0.0.1 and ::1)."""
    host, port = parse_hostport(address)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class SlotListeners:
    """The sets of the plain-HTTP listener, one per worker slot (see the module's doc)."""

    def __init__(self, address: str | None, backlog: int, sets: list[list[socket.socket]]) -> None:
        self.address = address
        self.backlog = backlog
        self.sets = sets

    @classmethod
    def open(cls, address: str | None, backlog: int, count: int, exclusive: bool = True) -> SlotListeners:
        """`count` sets on `address`. `exclusive` (listen.reuse_port off): OSError, as a
        plain bind would give, when something listens on the port already; the sets'
        SO_REUSEPORT would otherwise let this router join another one's port unasked."""
        listeners = cls(address, backlog, [])
        if address:
            if exclusive:
                for probe in open_listeners(address, 1, reuse_port=False):
                    probe.close()
            try:
                listeners.ensure(count, must=True)
            except OSError:
                listeners.close()
                raise
        return listeners

    def ensure(self, count: int, must: bool = False) -> None:
        """At least `count` sets. A set that cannot be opened (sockets taken over from a
        router whose listener has no SO_REUSEPORT) leaves the slots sharing the sets
        there are, with a warning; OSError instead when `must`."""
        while self.address and len(self.sets) < count:
            try:
                self.sets.append(open_listeners(self.address, self.backlog, reuse_port=True))
            except OSError as exc:
                if must:
                    raise
                log.warning("cannot open another listening socket on %s (%s): %d worker(s) share %d", self.address,
                            exc, count, len(self.sets))
                return

    def for_slot(self, slot: int, workers: int) -> list[socket.socket]:
        """The sockets the worker in `slot` (of `workers`) accepts on."""
        return [sock for index in self._indexes(slot, workers) for sock in self.sets[index]]

    def others(self, slot: int, workers: int) -> list[int]:
        """The descriptors of every other set: a worker closes them, so that none outlives
        the supervisor in a worker still draining."""
        mine = set(self._indexes(slot, workers))
        return [sock.fileno() for index, group in enumerate(self.sets) if index not in mine for sock in group]

    def _indexes(self, slot: int, workers: int) -> list[int]:
        if not self.sets:
            return []
        if len(self.sets) < workers:                   # fewer sets than slots: shared
            return [slot % len(self.sets)]
        return list(range(slot, len(self.sets), workers))

    def all(self) -> list[socket.socket]:
        return [sock for group in self.sets for sock in group]

    def close(self) -> None:
        for sock in self.all():
            sock.close()
