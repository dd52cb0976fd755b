"""Client side: one asyncio Protocol per client connection, parsing with httptools.

Connection lifecycle (one deadline per connection, checked by the server's sweep):

    state         deadline                    on expiry
    ----------    -------------------------   -----------------------------------------
    WAIT_HEAD     timeouts.request_header     408 if a request began, else close quietly
    BUSY          none (the exchange's own)   upstream timeout handled by the exchange
    IDLE          timeouts.idle               close (keep-alive expired)
    TUNNEL        none                        bytes flow until either side closes

Requests are answered in order: pipelined requests queue behind the current one, and
reading pauses while more than one is queued. A request is started only after the
parser has consumed the whole read, so a request that turns out malformed within the
same read never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from router.errors import STATUS, ErrorKind, RouterError
from router.proxy.exchange import Exchange
from router.proxy.http import CRLF, REQUEST_ID_RE, error_response
from router.proxy.proxy_protocol import ProxyHeaderError
from router.proxy.proxy_protocol import parse as parse_proxy_header
from router.proxy.settings import (H_AUTH, H_CONNECTION, H_CONTENT_LENGTH, H_EXPECT, H_GEO, H_HOST, H_PASS,
                                   H_REQUEST_ID, H_TENANT, H_TRANSFER_ENCODING, H_UPGRADE, H_XF_PROTO, H_XFF)

log = logging.getLogger("router.proxy")

if TYPE_CHECKING:
    from router.proxy.server import ProxyServer
    from router.proxy.upstream import UpstreamConnection

WAIT_HEAD, BUSY, IDLE, TUNNEL = range(4)
INF = float("inf")
# Reasons reading from the client is paused; reading resumes when none is left.
P_PIPELINE, P_UPSTREAM_FULL, P_PENDING, P_UPGRADE = 1, 2, 4, 8


class ClientConnection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "client_ip", "cur", "queue", "head_bytes", "phase",
                 "deadline", "pause_mask", "write_paused", "tunnel", "upgraded", "early", "closed",
                 "eof", "settings", "interest", "spelled", "max_head", "forwarded", "client_b", "trusted",
                 "scheme")

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.client_ip = "-"
        self.cur: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.head_bytes = 0
        self.phase = WAIT_HEAD
        self.deadline = INF
        self.pause_mask = 0
        self.write_paused = False
        self.tunnel: UpstreamConnection | None = None
        self.upgraded = False
        self.early: list[bytes] = []
        self.closed = False
        self.eof = False
        self.client_b = b"-"
        self.settings = None
        self.forwarded = b""
        self.trusted = False
        self.scheme: bytes | None = None     # b"https" when a PROXY v2 header says TLS

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        server = self.server
        if not server.admit(self):
            transport.abort()
            self.closed = True
            return
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = peer[0]
        self.client_b = self.client_ip.encode()
        self.deadline = server.loop.time() + server.state.settings.header_timeout

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgraded:
            # Bytes after an upgrade request, before the backend said 101: hold them.
            self.early.append(data)
            self.pause_reading(P_UPGRADE)
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self.upgraded = True
            rest = data[exc.args[0]:]
            if rest:
                self.early.append(rest)
        except HttpParserCallbackError as exc:
            err = exc.__context__
            if isinstance(err, RouterError):
                self.protocol_error(err.kind, err.message)
            elif err is not None:
                # A fault of the router's own, not of the request: no 400 that blames the
                # client, and the trace goes to the log.
                log.error("a request callback failed", exc_info=err)
                self.protocol_error(ErrorKind.INTERNAL, "internal error")
            else:
                self.protocol_error(ErrorKind.BAD_REQUEST, f"malformed request: {exc}")
            return
        except HttpParserError as exc:
            self.protocol_error(ErrorKind.BAD_REQUEST, f"malformed request: {exc}")
            return
        queue = self.queue
        if queue:
            head = queue[0]
            if head.decision is None and not head.finished:
                head.start()

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still wants the answer.
        self.eof = True
        if self.queue:
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.release(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        while self.queue:
            self.queue.popleft().abort()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.tunnel
        if up is None and self.queue:
            up = self.queue[0].upstream
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel
        if up is None and self.queue:
            up = self.queue[0].upstream
        if up is not None:
            up.resume_reading()

    # -- flow control ------------------------------------------------------------------
    def pause_reading(self, reason: int = P_UPSTREAM_FULL) -> None:
        if not self.pause_mask and not self.closed:
            self.transport.pause_reading()
        self.pause_mask |= reason

    def resume_reading(self, reason: int = P_UPSTREAM_FULL) -> None:
        if self.pause_mask & reason:
            self.pause_mask &= ~reason
            if not self.pause_mask and not self.closed:
                self.transport.resume_reading()

    # -- tunnel (Upgrade) -----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def open_tunnel(self, upstream: UpstreamConnection, rest: bytes) -> None:
        self.tunnel = upstream
        upstream.tunnel = self
        self.phase = TUNNEL
        self.deadline = INF
        if rest:
            self.transport.write(rest)
        for chunk in self.early:
            upstream.write(chunk)
        self.early = []
        self.resume_reading(P_UPGRADE | P_PIPELINE | P_PENDING)

    # -- httptools callbacks (request) ---------------------------------------------------
    def on_message_begin(self) -> None:
        ex = self.cur = Exchange(self)
        settings = ex.settings
        if settings is not self.settings:
            # Read once per snapshot, not per field: on_header runs for every field.
            self.settings = settings
            self.interest = settings.interest.get
            self.spelled = settings.spelled.get
            self.max_head = settings.max_header_bytes
            # The X-Forwarded-* lines of a request without its own X-Forwarded-For: the
            # same for every request of the connection under one config.
            self.forwarded = b"".join((b"X-Forwarded-For: ", self.client_b, b"\r\nX-Forwarded-Proto: ",
                                       self.scheme or settings.forwarded_proto, CRLF))
            self.trusted = settings.trusted is not None and settings.trusted(self.client_ip)
        self.head_bytes = 0
        if self.phase == IDLE:
            self.phase = WAIT_HEAD
            self.deadline = self.server.loop.time() + settings.header_timeout

    def on_url(self, url: bytes) -> None:
        ex = self.cur
        ex.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head:
            raise RouterError(ErrorKind.HEADERS_TOO_LARGE, "request head exceeds limits.max_header_bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.cur
        if ex.head_done:
            # Chunked trailers (RFC 9112 7.1.2): forwarded as they came.
            if ex.trailers is None:
                ex.trailers = []
            ex.trailers.append(b"".join((name, b": ", value, CRLF)))
            return
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head:
            raise RouterError(ErrorKind.HEADERS_TOO_LARGE, "request head exceeds limits.max_header_bytes")
        kind = self.spelled(name)
        if kind is None:
            kind = self.interest(name.lower(), H_PASS)
        # Field lines are built with one join: each bytes `+` takes and releases a buffer
        # of both operands and allocates, three times a line.
        if kind == H_PASS:
            ex.lines.append(b"".join((name, b": ", value, CRLF)))
        elif kind == H_HOST:
            if ex.host_b is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one Host header")
            ex.host_b = value
            ex.lines.append(b"".join((name, b": ", value, CRLF)))
        elif kind == H_TENANT:
            # Never forwarded: the router sets the tenant header from its own decision.
            if ex.tenant_header is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one tenant header")
            ex.tenant_header = value.decode("latin-1")
        elif kind == H_AUTH:
            # Routing reads one token and the backend would see all: refuse the ambiguity.
            if ex.authorization_b is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one Authorization header")
            ex.authorization_b = value
            ex.lines.append(b"".join((name, b": ", value, CRLF)))
        elif kind == H_GEO:
            ex.geo_b = value
            ex.lines.append(b"".join((name, b": ", value, CRLF)))
        elif kind == H_CONTENT_LENGTH:
            # llhttp already refuses duplicates and CL with TE; this guards the value itself.
            if not value.strip().isdigit():
                raise RouterError(ErrorKind.BAD_REQUEST, "invalid Content-Length")
            n = int(value)
            if ex.content_length is not None and ex.content_length != n:
                raise RouterError(ErrorKind.BAD_REQUEST, "conflicting Content-Length headers")
            ex.content_length = n
        elif kind == H_TRANSFER_ENCODING:
            # llhttp accepts any coding list ending in chunked; the router only undoes
            # chunked, so another coding would reach the backend mislabelled (RFC 9112 6.1).
            if value.strip().lower() != b"chunked":
                raise RouterError(ErrorKind.NOT_IMPLEMENTED, "transfer coding other than chunked")
            ex.chunked = True
        elif kind == H_REQUEST_ID:
            if REQUEST_ID_RE.fullmatch(value):
                ex.request_id = value
        elif kind == H_XFF:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif kind == H_CONNECTION:
            ex.conn_header = value if ex.conn_header is None else ex.conn_header + b", " + value
        elif kind == H_UPGRADE:
            ex.upgrade = value
        elif kind == H_EXPECT:
            ex.lines.append(b"".join((name, b": ", value, CRLF)))
        elif kind == H_XF_PROTO:
            # Kept from a trusted proxy only, and only as a scheme: any client could claim
            # https. In a list ("https, http") the first proxy's word is the client's scheme.
            if self.trusted and ex.xf_proto is None:
                proto = value.split(b",", 1)[0].strip().lower()
                if proto == b"https" or proto == b"http":
                    ex.xf_proto = proto
        # H_XF_HOST, H_HOP: dropped; the router sets the X-Forwarded-* itself.

    def on_headers_complete(self) -> None:
        ex = self.cur
        parser = self.parser
        ex.head_done = True
        ex.method_b = parser.get_method()
        # Of the versions llhttp accepts (0.9, 1.0, 1.1, 2.0) only 1.1 is kept alive without
        # a Connection field, so the common request needs no version string (costly to build).
        if ex.conn_header is not None or not parser.should_keep_alive():
            version = parser.get_http_version()
            if version not in ("1.1", "1.0"):
                raise RouterError(ErrorKind.BAD_REQUEST, f"unsupported HTTP version {version}")
            ex.http10 = version == "1.0"
            ex.keep_alive = parser.should_keep_alive()
        if ex.host_b is None and not ex.http10:
            raise RouterError(ErrorKind.BAD_REQUEST, "missing Host header (RFC 9112 3.2)")
        if ex.upgrade is not None and not parser.should_upgrade():
            ex.upgrade = None
        if ex.chunked and ex.content_length is not None:
            raise RouterError(ErrorKind.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
        self.phase = BUSY
        self.deadline = INF
        self.server.metrics.in_flight += 1
        self.queue.append(ex)
        if len(self.queue) > 1:
            self.pause_reading(P_PIPELINE)

    def on_body(self, body: bytes) -> None:
        self.cur.on_body(body)

    def on_message_complete(self) -> None:
        ex = self.cur
        if ex.chunked and not ex.finished:
            ex.on_request_done()   # sends the last chunk and the trailers
        else:
            ex.req_done = True

    # -- ending ------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange, aborted: bool) -> None:
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        elif ex in queue:
            queue.remove(ex)
        if self.closed:
            return
        if ex.close_after or aborted or (self.upgraded and self.tunnel is None) or (self.eof and not queue):
            self.closed = True
            self.transport.close()
            return
        if self.pause_mask and len(queue) <= 1:
            self.resume_reading(P_PIPELINE)
        if queue:
            nxt = queue[0]
            if nxt.decision is None and not nxt.finished:
                nxt.start()
        elif self.tunnel is None:
            if self.server.draining:
                self.closed = True
                self.transport.close()
                return
            self.phase = IDLE
            self.deadline = self.server.loop.time() + ex.settings.idle_timeout

    def protocol_error(self, kind: ErrorKind, message: str) -> None:
        """The client sent something we cannot parse: answer once, close, forward nothing."""
        if self.closed:
            return
        queue = self.queue
        owner = None
        if not any(ex.resp_started for ex in queue):
            # The answer belongs to the first request whose head was read (a body that
            # turned out malformed); with none, to the request being parsed.
            owner = queue[0] if queue else None
            rid = (owner.request_id if owner is not None else None) or self.server.next_request_id()
            if owner is not None:
                owner.request_id = rid
            self.transport.write(error_response(kind, message, rid, close=True))
            if owner is None:
                self.server.metrics.stamp(None).observe(STATUS[kind], 0.0)
        self.closed = True      # exchange_done must not act on a connection being torn down
        while queue:
            ex = queue.popleft()
            ex.abort(STATUS[kind] if ex is owner else 499)
        self.transport.close()

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep; enforces the connection's named deadline."""
        if now >= self.deadline and not self.closed:
            if self.phase == WAIT_HEAD and self.cur is not None and not self.cur.head_done:
                self.protocol_error(ErrorKind.REQUEST_TIMEOUT, "request head not received within timeouts.request_header")
            else:
                self.closed = True
                self.transport.close()
            return
        if self.queue:
            ex = self.queue[0]
            if now >= ex.up_deadline:
                ex.upstream_timed_out()

    def close_if_idle(self) -> None:
        """Draining: close a keep-alive connection waiting for its next request. One that
        has not sent its first request yet was accepted for a request on its way: it is
        answered (with Connection: close), or ends at its header deadline."""
        if self.phase == IDLE and not self.queue and not self.closed and (self.cur is None or self.cur.finished):
            self.closed = True
            self.transport.close()

    @property
    def in_use(self) -> bool:
        """Something to finish before a drain may close it."""
        return bool(self.queue or self.tunnel) or (self.phase == WAIT_HEAD and not self.closed)


class ProxiedConnection(ClientConnection):
    """A client connection from a layer-4 balancer that opens it with a PROXY protocol
    header (listen.proxy_protocol): the client address comes from that header. A
    subclass, so that a listener without it pays nothing per read."""

    __slots__ = ("preamble",)

    def __init__(self, server: ProxyServer) -> None:
        super().__init__(server)
        self.preamble: bytes | None = b""      # bytes of the header so far; None once read

    def data_received(self, data: bytes) -> None:
        if self.preamble is None:
            ClientConnection.data_received(self, data)
            return
        buf = self.preamble + data if self.preamble else data
        try:
            header = parse_proxy_header(buf)
        except ProxyHeaderError as exc:
            # Nothing is answered: a peer that does not open with the header is not the
            # balancer, and an HTTP answer would tell a scanner what listens here.
            self.server.metrics.proxy_protocol_errors += 1
            log.debug("closing a connection from %s: %s", self.client_ip, exc)
            self.close()
            return
        if header is None:
            self.preamble = buf
            return
        length, source, tls = header
        self.preamble = None
        if source is not None:                 # else LOCAL/UNKNOWN: the balancer's own
            self.client_ip = source
            self.client_b = source.encode()
        if tls:
            self.scheme = b"https"
        if len(buf) > length:
            ClientConnection.data_received(self, buf[length:])
