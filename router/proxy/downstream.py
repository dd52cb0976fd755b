# cython: annotation_typing=False
"""Client side: one asyncio Protocol per client connection, parsing with httptools.

The connection's phases and deadlines are the table of router.proxy.lifecycle; reading
pauses and resumes through a FlowControl (router.proxy.flow).

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
from router.proxy.batch import BatchedTransport, batch_for
from router.proxy.ends import ClientEnd
from router.proxy.exchange import Exchange
from router.proxy.flow import FlowControl, Pause
from router.proxy.http import CRLF, error_response
from router.proxy.lifecycle import ROWS, Deadline, Event, Expiry, EXPIRY, Phase
from router.proxy.proxy_protocol import ProxyHeaderError
from router.proxy.proxy_protocol import parse as parse_proxy_header
from router.proxy.settings import H_PASS

log = logging.getLogger("router.proxy")

if TYPE_CHECKING:
    from router.proxy.server import ProxyServer
    from router.proxy.upstream import UpstreamConnection

INF = float("inf")
_KEEP, _NONE, _HEADER = Deadline.KEEP, Deadline.NONE, Deadline.HEADER
_BEGUN, _HEAD_READ, _ANSWERED_ALL = Event.REQUEST_BEGUN, Event.HEAD_READ, Event.ANSWERED_ALL


class ClientConnection(ClientEnd):
    # server, transport, closed, flow, client_b, scheme and forwarded are ClientEnd's.
    __slots__ = ("parser", "client_ip", "cur", "queue", "head_bytes", "phase",
                 "deadline", "tunnel", "upgraded", "early", "eof", "settings", "interest", "spelled",
                 "max_head", "trusted")

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = HttpRequestParser(self)
        self.client_ip = "-"
        self.cur: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.head_bytes = 0
        self.phase = Phase.WAIT_HEAD
        self.deadline = INF
        self.flow = FlowControl()
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
        transport = BatchedTransport(transport, batch_for(asyncio.get_running_loop()))
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
            self.pause_reading(Pause.UPGRADE)
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
        if self.queue:
            self._start_first()

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still wants the answer.
        self.eof = True
        if self.queue:
            ex = self.queue[0]
            if ex.decision is not None and ex.decision.held and not ex.finished:
                # Held (a paused tenant): nothing was sent anywhere, and a client that
                # closed must not keep its place in the hold queue (router.proxy.hold).
                ex.abort()
                return None
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.release(self)
        if self.tunnel is not None:
            self.server.tenant_load.tunnel_closed(self.tunnel)
            self.tunnel.close()
            self.tunnel = None
        while self.queue:
            self.queue.popleft().abort()

    def pause_writing(self) -> None:
        self.flow.writing_paused()
        up = self.tunnel
        if up is None and self.queue:
            up = self.queue[0].upstream
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.flow.writing_resumed()
        up = self.tunnel
        if up is None and self.queue:
            up = self.queue[0].upstream
        if up is not None:
            up.resume_reading()

    # -- flow control ------------------------------------------------------------------
    def pause_reading(self, reason: Pause = Pause.PEER_FULL) -> None:
        if self.flow.pause(reason) and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self, reason: Pause = Pause.PEER_FULL) -> None:
        if self.flow.resume(reason) and not self.closed:
            self.transport.resume_reading()

    # -- lifecycle (router.proxy.lifecycle) ----------------------------------------------
    def _move(self, event: Event, settings) -> None:
        phase, deadline = ROWS[self.phase][event]
        self.phase = phase
        if deadline == _KEEP:
            return
        if deadline == _NONE:
            self.deadline = INF
        elif deadline == _HEADER:
            self.deadline = self.server.clock() + settings.header_timeout
        else:
            self.deadline = self.server.clock() + settings.idle_timeout

    # -- tunnel (Upgrade) -----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def open_tunnel(self, upstream: UpstreamConnection, rest: bytes) -> None:
        self.tunnel = upstream
        upstream.become_tunnel(self)
        self._move(Event.UPGRADED, None)
        if rest:
            self.transport.write(rest)
        for chunk in self.early:
            upstream.write(chunk)
        self.early = []
        self.resume_reading(Pause.UPGRADE | Pause.PIPELINE | Pause.PENDING)

    # -- httptools callbacks (request) ---------------------------------------------------
    def on_message_begin(self) -> None:
        ex = self.cur = Exchange(self)
        settings = ex.settings
        if settings is not self.settings:
            # Read once per snapshot, not per field: on_header runs for every field.
            self.settings = settings
            self.interest = settings.interest
            self.spelled = settings.spelled
            self.max_head = settings.max_header_bytes
            # The X-Forwarded-* lines of a request without its own X-Forwarded-For: the
            # same for every request of the connection under one config.
            self.forwarded = b"".join((b"X-Forwarded-For: ", self.client_b, b"\r\nX-Forwarded-Proto: ",
                                       self.scheme or settings.forwarded_proto, CRLF))
            self.trusted = settings.trusted is not None and settings.trusted(self.client_ip)
        self.head_bytes = 0
        self._move(_BEGUN, settings)

    def on_url(self, url: bytes) -> None:
        self.cur.add_url(url)
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head:
            raise RouterError(ErrorKind.HEADERS_TOO_LARGE, "request head exceeds limits.max_header_bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.cur
        if ex.head_done:
            ex.add_trailer(name, value)
            return
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head:
            raise RouterError(ErrorKind.HEADERS_TOO_LARGE, "request head exceeds limits.max_header_bytes")
        kind = self.spelled.get(name)
        if kind is None:
            kind = self.interest.get(name.lower(), H_PASS)
        ex.add_field(kind, name, value, self.trusted)

    def on_headers_complete(self) -> None:
        ex = self.cur
        ex.head_complete(self.parser)
        self._move(_HEAD_READ, None)
        self.server.metrics.request_began()
        self.queue.append(ex)
        if len(self.queue) > 1:
            self.pause_reading(Pause.PIPELINE)

    def on_body(self, body: bytes) -> None:
        self.cur.on_body(body)

    def on_message_complete(self) -> None:
        self.cur.on_request_done()

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
        if self.flow.reasons and len(queue) <= 1:
            self.resume_reading(Pause.PIPELINE)
        if queue:
            self._start_first()
        elif self.tunnel is None:
            if self.server.draining:
                self.closed = True
                self.transport.close()
                return
            self._move(_ANSWERED_ALL, ex.settings)

    def _start_first(self) -> None:
        """Start the first queued exchange unless it has started (or ended) already."""
        ex = self.queue[0]
        if ex.decision is None and not ex.finished:
            ex.start()

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
            rid = owner.answer_id() if owner is not None else self.server.next_request_id()
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
            if EXPIRY[self.phase] == Expiry.ANSWER_408 and self.cur is not None and not self.cur.head_done:
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
        if self.phase == Phase.IDLE and not self.queue and not self.closed and (self.cur is None or self.cur.finished):
            self.closed = True
            self.transport.close()

    @property
    def in_use(self) -> bool:
        """Something to finish before a drain may close it."""
        return bool(self.queue or self.tunnel) or (self.phase == Phase.WAIT_HEAD and not self.closed)


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
