# cython: annotation_typing=False
"""Upstream side: per-backend connection pools and the response relay.

An `UpstreamConnection` carries one exchange at a time. It parses the backend's response
with httptools and relays it to the client as it arrives (never buffering a whole body),
re-framing where the two sides differ (a close-delimited response becomes chunked for an
HTTP/1.1 client). When the response is complete and both sides allow it, the connection
goes back to its `BackendPool` for reuse.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from router.config.addresses import parse_hostport
from router.proxy.batch import BatchedTransport, batch_for
from router.proxy.ends import UpstreamEnd
from router.proxy.flow import FlowControl, Pause
from router.proxy.framing import ends_at_head
from router.proxy.head import response_connection
from router.proxy.http import CRLF
from router.proxy.response_fields import (CONNECTION, CONTENT_LENGTH, EXACT, PASS, READ_WHOLE_HEADS, SPECIAL,
                                          TRANSFER_ENCODING, UPGRADE, read_head)

if TYPE_CHECKING:
    from router.proxy.exchange import Exchange

# Typed copies (upstream.pxd): looked up as C once per field or response.
_SPECIAL, _EXACT, _READ_WHOLE_HEADS = SPECIAL, EXACT, READ_WHOLE_HEADS


class _EachField:
    """The protocol of the parser that reports each field, for the heads `read_head` leaves
    to it: the connection's own callbacks, plus on_header. (The other parser's protocol is
    the connection itself, which has no on_header: httptools then calls nothing per field.)"""

    __slots__ = ("on_message_begin", "on_header", "on_headers_complete", "on_body", "on_message_complete")

    def __init__(self, conn: UpstreamConnection) -> None:
        self.on_message_begin = conn.on_message_begin
        self.on_header = conn.on_field
        self.on_headers_complete = conn.on_headers_complete
        self.on_body = conn.on_body
        self.on_message_complete = conn.on_message_complete


class UpstreamConnection(UpstreamEnd):
    """One connection to a backend. It parses each response's head into its own fields
    (reset as each message begins) and hands the exchange it serves the parts as they
    complete: the head, body bytes, the end.

    It has two parsers and picks one as each response begins: `fast` when the read holds
    a whole ordinary head, whose fields read_head then takes from the bytes
    (router.proxy.response_fields), `each_field` otherwise, which reports every field
    (on_field). Each parser is fed whole messages, so either is between two when picked."""

    __slots__ = ("pool", "parser", "fast", "each_field", "exchange", "reused", "idle_since", "got_bytes", "tunnel",
                 "reset_parser", "flow", "closed", "at_message_start", "head_read",
                 # the response being parsed
                 "lines", "length", "chunked", "connection", "upgrade", "trailers", "in_body", "close_asked")

    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.fast = self.parser = HttpResponseParser(self)
        self.each_field = HttpResponseParser(_EachField(self))
        self.exchange: Exchange | None = None
        self.reused = False
        self.idle_since = 0.0
        self.got_bytes = False
        self.tunnel = None
        self.flow = FlowControl()
        self.closed = False
        self.reset_parser = False
        self.head_read = False          # read_head took the fields of the response begun
        self.clear_fields()
        self.at_message_start = True    # no byte of the next response parsed yet

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        transport = BatchedTransport(transport, batch_for(asyncio.get_running_loop()))
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            if self.tunnel is not None:
                self.tunnel.write(data)
            else:
                # Bytes on an idle connection: the backend is out of step with us; drop it.
                self.close()
            return
        self.got_bytes = True
        ex.read_begins()
        if self.at_message_start:
            self.parser = self.fast if self.read_fields(data) else self.each_field
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            ex.upstream_upgraded(self, data[exc.args[0]:])
        except HttpParserError as exc:
            ex.flush()
            ex.upstream_failed(self, "protocol", f"invalid response from backend: {exc}")
        else:
            ex.read_ends()
            if not ex.resp_started and self.exchange is ex:
                ex.head_spans_reads(self, len(data))
        if self.reset_parser:
            self.reset_parser = False
            if self.parser is self.fast:
                self.fast = HttpResponseParser(self)
            else:
                self.each_field = HttpResponseParser(_EachField(self))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.upstream_closed(self, exc, self.trailers)
        elif self.tunnel is not None:
            self.tunnel.close()

    def pause_writing(self) -> None:
        peer = self.exchange.conn if self.exchange is not None else self.tunnel
        if peer is not None:
            peer.pause_reading(Pause.PEER_FULL)

    def resume_writing(self) -> None:
        peer = self.exchange.conn if self.exchange is not None else self.tunnel
        if peer is not None:
            peer.resume_reading(Pause.PEER_FULL)

    # -- called by the exchange and the client side --------------------------------------
    def serve(self, ex: Exchange) -> None:
        """Carry `ex` from now on: its head goes out first."""
        self.exchange = ex

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: back to its pool, or closed."""
        self.exchange = None
        if reusable and not self.closed:
            self.got_bytes = False
            self.pool.put(self)
        else:
            self.close()

    def become_tunnel(self, peer) -> None:
        """After a 101: bytes from the backend go to `peer` as they come."""
        self.exchange = None
        self.tunnel = peer

    def pause_reading(self, reason: Pause = Pause.PEER_FULL) -> None:
        if self.flow.pause(reason) and self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self, reason: Pause = Pause.PEER_FULL) -> None:
        if self.flow.resume(reason) and self.transport is not None:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def read_fields(self, data: bytes) -> bool:
        """The fields of the response `data` begins with, if it holds a whole ordinary head
        (and the build reads heads so)."""
        head = read_head(data) if _READ_WHOLE_HEADS else None
        if head is None:
            return False
        self.clear_fields()
        self.lines, self.length, self.close_asked = head
        self.head_read = True
        return True

    def clear_fields(self) -> None:
        self.lines: list[bytes] | None = None      # the fields passed on: whole lines, or parts (on_field)
        self.length: bytes | None = None
        self.chunked = False
        self.connection: bytes | None = None
        self.upgrade: bytes | None = None
        self.trailers: list[bytes] | None = None
        self.in_body = False
        self.close_asked = False

    # -- httptools callbacks (response) ---------------------------------------------------
    def on_message_begin(self) -> None:
        self.at_message_start = False
        if self.head_read:
            self.head_read = False
        else:
            self.clear_fields()

    def on_field(self, name: bytes, value: bytes) -> None:
        """httptools' on_header, of the parser that reports each field (see the class's doc)."""
        if self.in_body:
            if self.trailers is not None:
                self.trailers.append(b"".join((name, b": ", value, CRLF)))
            return
        kind = _EXACT.get(name)
        if kind is None:
            kind = _SPECIAL.get(name.lower(), PASS)
        if kind == PASS:
            # Kept as parts, joined once with the whole head (router.proxy.head): a join
            # per field line cost a tuple, a bytes object and a copy more per field.
            if self.lines is None:
                self.lines = [name, b": ", value, CRLF]
            else:
                self.lines.extend((name, b": ", value, CRLF))
        elif kind == CONTENT_LENGTH:
            self.length = value
        elif kind == TRANSFER_ENCODING:
            self.chunked = value.strip().lower().endswith(b"chunked")
        elif kind == CONNECTION:
            # "keep-alive" is HTTP/1.1's default and says nothing more; most backends send it.
            if value != b"keep-alive" or self.connection is not None:
                self.connection = value if self.connection is None else self.connection + b", " + value
        elif kind == UPGRADE:
            self.upgrade = value
        # other hop-by-hop fields end here (RFC 9110 7.6.1)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        ex = self.exchange
        lines = self.lines
        if self.connection is not None:
            lines, self.close_asked = response_connection(lines or [], self.connection, self.upgrade, status)
        if 100 <= status < 200 and status != 101:
            ex.interim_response(status, lines)
            return
        self.in_body = True
        if self.chunked:
            self.trailers = []
        ex.response_head(status, lines, self.length, self.chunked)
        if ends_at_head(status, ex.method_b == b"HEAD", self.length):
            # The message ends here; a fresh parser takes the next one.
            self.reset_parser = True
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.response_body(body)

    def on_message_complete(self) -> None:
        self.at_message_start = True
        ex = self.exchange
        if ex is None or not self.in_body:
            return  # an interim (1xx) response ended; the final one follows
        if ex.status == 101:
            return  # the upgrade path (HttpParserUpgrade) takes it from here
        ex.response_complete(self, not self.close_asked and self.parser.should_keep_alive(), self.trailers)


class BackendPool:
    """Idle keep-alive connections to one backend, and its outstanding request count."""

    __slots__ = ("address", "host", "port", "idle", "outstanding", "max_idle", "retired", "connections", "loop",
                 "tls", "server_name")

    def __init__(self, address: str, max_idle: int, loop: asyncio.AbstractEventLoop, tls=None) -> None:
        self.loop = loop
        self.address = address
        self.host, self.port = parse_hostport(address)
        self.tls = tls                # router.tls.upstream.UpstreamTls: connections are TLS
        self.server_name = (tls.server_name or self.host) if tls is not None else None
        self.idle: deque[UpstreamConnection] = deque()
        self.outstanding = 0
        self.max_idle = max_idle
        self.retired = False          # removed from the config: drain, never pool again
        self.connections: set[UpstreamConnection] = set()

    def begin(self) -> None:
        """A request was given to this backend (least-outstanding balancing counts these)."""
        self.outstanding += 1

    def end(self) -> None:
        self.outstanding -= 1

    def take(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()          # LIFO: the warmest connection, least likely closed by the peer
            if not conn.closed and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        if self.retired or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        conn.reused = True
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.connections.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def sweep(self, now: float, idle_timeout: float) -> None:
        """Close idle connections older than idle_timeout (oldest sit at the left)."""
        idle = self.idle
        while idle and now - idle[0].idle_since > idle_timeout:
            idle.popleft().close()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Pools:
    """All backend pools, kept across reloads for backends that stay."""

    def __init__(self, max_idle: int, idle_timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pools: dict[str, BackendPool] = {}
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.tls: dict = {}           # backend -> UpstreamTls, for backends of stamps with [stamps.tls]

    def get(self, address: str) -> BackendPool:
        pool = self.pools.get(address)
        if pool is None:
            pool = self.pools[address] = BackendPool(address, self.max_idle, self.loop, self.tls.get(address))
        return pool

    async def connect(self, pool: BackendPool, timeout: float) -> UpstreamConnection:
        # The connect timeout covers the TLS handshake too: both are "reaching the backend".
        if pool.tls is None:
            connecting = self.loop.create_connection(lambda: UpstreamConnection(pool), pool.host, pool.port)
        else:
            connecting = self.loop.create_connection(lambda: UpstreamConnection(pool), pool.host, pool.port,
                                                     ssl=pool.tls.context, server_hostname=pool.server_name,
                                                     ssl_handshake_timeout=timeout)
        _, conn = await asyncio.wait_for(connecting, timeout)
        pool.connections.add(conn)
        return conn

    def sync(self, backends: set[str], max_idle: int, idle_timeout: float, tls: dict | None = None) -> None:
        """Adopt a new backend set: removed backends drain (in-flight finish, idle close),
        and so do the pools of backends whose TLS settings changed (new ones replace them)."""
        self.max_idle, self.idle_timeout = max_idle, idle_timeout
        self.tls = tls or {}
        for address, pool in list(self.pools.items()):
            pool.max_idle = max_idle
            if address not in backends or pool.tls is not self.tls.get(address):
                pool.retired = True
                pool.close_idle()
                del self.pools[address]

    def sweep(self, now: float) -> None:
        for pool in list(self.pools.values()):
            pool.sweep(now, self.idle_timeout)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.retired = True
            pool.close_idle()
