# cython: annotation_typing=False
"""One request/response pair: asks the core for a decision and carries it out.

The exchange is the proxy's per-request object. It doubles as the core's `RequestFacts`
(host, tenant_header, authorization, geo, client, method), so deciding allocates nothing
but the Decision. It never decides anything itself: a refusal is the decision's error
kind, a failover is the decision's stamp. What it owns is the carrying out: picking a
backend among the decision's candidates, the upstream connection, retries, timeouts,
re-framing the body, and the bookkeeping when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from typing import TYPE_CHECKING

from router.core.decide import decide
from router.errors import STATUS, ErrorKind, RouterError
from router.proxy.flow import Pause
from router.proxy.forwarded import forwarded_client
from router.proxy.framing import Relay, response_framing
from router.proxy.head import forwarded_fields, request_head, response_head, without_named
from router.proxy.http import CRLF, REQUEST_ID_RE, error_response, status_line
from router.proxy.retry import Next, after_loss, may_retry, replayable
from router.proxy.settings import (H_AUTH, H_CONNECTION, H_CONTENT_LENGTH, H_EXPECT, H_GEO, H_HOST, H_PASS,
                                   H_REQUEST_ID, H_TENANT, H_TRANSFER_ENCODING, H_UPGRADE, H_XF_PROTO, H_XFF)

if TYPE_CHECKING:
    from router.proxy.downstream import ClientConnection
    from router.proxy.upstream import BackendPool, UpstreamConnection

log = logging.getLogger("router.proxy")

# A request body is kept for a resend while it is at most this large; past it, the
# request can only go to the first backend that accepted it.
REPLAY_MAX = 64 * 1024
# Body bytes held while the upstream connection is being opened, before reading pauses.
PENDING_MAX = 256 * 1024
INF = float("inf")
_time = time.time
_perf_counter = time.perf_counter
_R_NONE, _R_CHUNKED = Relay.NONE, Relay.CHUNKED


class Exchange:
    # Slots, all set in __init__: slot reads and writes are the cheapest Python has, no
    # per-request dict is built, and the compiled build (exchange.pxd) declares the same
    # names as C fields.
    __slots__ = (
        "conn", "server", "snap", "settings", "t0", "lines",
        # request head
        "url", "method_b", "host_b", "tenant_header", "authorization_b", "request_id", "xff", "xf_proto",
        "conn_header", "upgrade", "content_length", "chunked", "http10", "head_done", "keep_alive",
        "geo_b", "trailers",
        # carrying out
        "decision", "head", "pool", "backend", "upstream", "up_deadline", "req_done",
        "t_up", "tried", "connect_task", "pending", "pending_bytes", "replay", "replay_ok", "replay_bytes",
        "body_in", "retried",
        # response
        "out", "status", "resp_started", "framing", "close_after", "bytes_out", "finished",
        "read_started", "read_sent", "resp_head_bytes", "until_close", "fail_kind", "fail_message",
    )

    # The other request facts the core reads, decoded only when a source asks for them:
    # most routing reads one header, not four.
    @property
    def method(self) -> str:
        return self.method_b.decode("ascii")

    @property
    def host(self) -> str | None:
        return None if self.host_b is None else self.host_b.decode("latin-1")

    @property
    def authorization(self) -> str | None:
        return None if self.authorization_b is None else self.authorization_b.decode("latin-1")

    @property
    def geo(self) -> str | None:
        return None if self.geo_b is None else self.geo_b.decode("latin-1")

    @property
    def client_cert_cn(self) -> str | None:
        # Only TLS connections (router.proxy.tls) have a verified client certificate.
        return getattr(self.conn, "peer_cn", None)

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        # Read through the typed fields (the compiled build reads them as C).
        self.server = self.conn.server
        # Each request is decided and carried out on the snapshot current when it began.
        self.snap, self.settings = self.server.state.current
        self.t0 = _perf_counter()   # durations: uvloop's loop.time() only has 1 ms resolution
        self.lines: list[bytes] = []           # end-to-end fields as parts: name, b": ", value, CRLF
        # request head (from the parser's callbacks, through ClientConnection)
        self.url = b""
        self.method_b = b"GET"
        self.host_b = self.tenant_header = self.authorization_b = self.request_id = None
        self.xff = self.xf_proto = self.conn_header = self.upgrade = self.content_length = None
        self.chunked = self.http10 = self.head_done = self.req_done = False
        self.keep_alive = True
        self.geo_b = None
        self.trailers: list[bytes] | None = None
        # carrying out
        self.decision = self.pool = self.backend = self.upstream = None
        self.head = b""
        self.up_deadline = INF
        self.t_up = 0.0                          # set only when the access log is on
        self.tried: list[str] | None = None
        self.connect_task = None
        self.pending: list[bytes] | None = None
        self.pending_bytes = 0
        self.replay: list[bytes] | None = None   # what was sent upstream, kept for a resend
        self.replay_ok = True                    # False once the body outgrew REPLAY_MAX
        self.replay_bytes = self.body_in = 0
        self.retried = False
        # response, as relayed to the client. While an upstream read is being parsed,
        # client-bound bytes collect in `out` and go out in one write: head and body of
        # a small response cost one send(), not two.
        self.out = None
        self.status = self.bytes_out = 0
        self.framing = _R_NONE
        self.resp_started = self.close_after = self.finished = False
        self.read_started = False
        self.read_sent = 0
        self.resp_head_bytes = 0       # of a response head not complete after its first read
        self.until_close = False       # body ends when the backend closes (RFC 9112 6.3 rule 8)
        self.fail_kind = "reset"       # how the upstream connection failed, for metrics and the answer
        self.fail_message: str | None = None

    @property
    def client(self) -> str:
        # Read by geo placement and the access log only: the walk costs nothing otherwise.
        conn = self.conn
        if conn.trusted and self.xff:
            return forwarded_client(self.xff, conn.client_ip, self.settings.trusted)
        return conn.client_ip

    # -- request head (ClientConnection's parser callbacks) ------------------------------
    def add_url(self, url: bytes) -> None:
        self.url += url

    def add_field(self, kind: int, name: bytes, value: bytes, trusted: bool) -> None:
        """One field of the request head, as ClientConnection classified it (H_*)."""
        # Field lines are kept as parts (name, b": ", value, CRLF) and joined once with the
        # whole head: a join per line cost a tuple, a bytes object and a copy more.
        if kind == H_PASS:
            self.lines.extend((name, b": ", value, CRLF))
        elif kind == H_HOST:
            if self.host_b is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one Host header")
            self.host_b = value
            self.lines.extend((name, b": ", value, CRLF))
        elif kind == H_TENANT:
            # Never forwarded: the router sets the tenant header from its own decision.
            if self.tenant_header is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one tenant header")
            self.tenant_header = value.decode("latin-1")
        elif kind == H_AUTH:
            # Routing reads one token and the backend would see all: refuse the ambiguity.
            if self.authorization_b is not None:
                raise RouterError(ErrorKind.BAD_REQUEST, "more than one Authorization header")
            self.authorization_b = value
            self.lines.extend((name, b": ", value, CRLF))
        elif kind == H_GEO:
            self.geo_b = value
            self.lines.extend((name, b": ", value, CRLF))
        elif kind == H_CONTENT_LENGTH:
            # llhttp already refuses duplicates and CL with TE; this guards the value itself.
            if not value.strip().isdigit():
                raise RouterError(ErrorKind.BAD_REQUEST, "invalid Content-Length")
            n = int(value)
            if self.content_length is not None and self.content_length != n:
                raise RouterError(ErrorKind.BAD_REQUEST, "conflicting Content-Length headers")
            self.content_length = n
        elif kind == H_TRANSFER_ENCODING:
            # llhttp accepts any coding list ending in chunked; the router only undoes
            # chunked, so another coding would reach the backend mislabelled (RFC 9112 6.1).
            if value.strip().lower() != b"chunked":
                raise RouterError(ErrorKind.NOT_IMPLEMENTED, "transfer coding other than chunked")
            self.chunked = True
        elif kind == H_REQUEST_ID:
            if REQUEST_ID_RE.fullmatch(value):
                self.request_id = value
        elif kind == H_XFF:
            self.xff = value if self.xff is None else self.xff + b", " + value
        elif kind == H_CONNECTION:
            self.conn_header = value if self.conn_header is None else self.conn_header + b", " + value
        elif kind == H_UPGRADE:
            self.upgrade = value
        elif kind == H_EXPECT:
            self.lines.extend((name, b": ", value, CRLF))
        elif kind == H_XF_PROTO:
            # Kept from a trusted proxy only, and only as a scheme: any client could claim
            # https. In a list ("https, http") the first proxy's word is the client's scheme.
            if trusted and self.xf_proto is None:
                proto = value.split(b",", 1)[0].strip().lower()
                if proto == b"https" or proto == b"http":
                    self.xf_proto = proto
        # H_XF_HOST, H_HOP: dropped; the router sets the X-Forwarded-* itself.

    def add_trailer(self, name: bytes, value: bytes) -> None:
        """A field after a chunked body (RFC 9112 7.1.2): forwarded as it came."""
        if self.trailers is None:
            self.trailers = []
        self.trailers.append(b"".join((name, b": ", value, CRLF)))

    def head_complete(self, parser) -> None:
        """The request head is read: its method, version and what they imply."""
        self.head_done = True
        self.method_b = parser.get_method()
        # Of the versions llhttp accepts (0.9, 1.0, 1.1, 2.0) only 1.1 is kept alive without
        # a Connection field, so the common request needs no version string (costly to build).
        if self.conn_header is not None or not parser.should_keep_alive():
            version = parser.get_http_version()
            if version not in ("1.1", "1.0"):
                raise RouterError(ErrorKind.BAD_REQUEST, f"unsupported HTTP version {version}")
            self.http10 = version == "1.0"
            self.keep_alive = parser.should_keep_alive()
        if self.host_b is None and not self.http10:
            raise RouterError(ErrorKind.BAD_REQUEST, "missing Host header (RFC 9112 3.2)")
        if self.upgrade is not None and not parser.should_upgrade():
            self.upgrade = None
        if self.chunked and self.content_length is not None:
            raise RouterError(ErrorKind.BAD_REQUEST, "both Content-Length and Transfer-Encoding")

    def answer_id(self) -> bytes:
        """The request's id, made now if it has none yet (an answer always names one)."""
        if self.request_id is None:
            self.request_id = self.server.next_request_id()
        return self.request_id

    # -- request body ------------------------------------------------------------------
    def on_body(self, chunk: bytes) -> None:
        n = len(chunk)
        self.body_in += n
        if self.body_in > self.settings.max_body_bytes:
            self.refuse_mid_body(ErrorKind.BODY_TOO_LARGE, "request body exceeds limits.max_body_bytes")
            return
        data = b"%x\r\n%b\r\n" % (n, chunk) if self.chunked else chunk
        self._send_body(data)

    def on_request_done(self) -> None:
        """The end of the request's body."""
        if self.chunked and not self.finished:
            # The last chunk and the trailers.
            self.req_done = True
            self._send_body(b"0\r\n" + (b"".join(self.trailers) if self.trailers else b"") + CRLF)
        else:
            self.req_done = True

    def _send_body(self, data: bytes) -> None:
        if self.replay_ok:
            self.replay_bytes += len(data)
            if self.replay_bytes <= REPLAY_MAX:
                if self.replay is None:
                    self.replay = []
                self.replay.append(data)
            else:
                self.replay_ok = False
                self.replay = None
        up = self.upstream
        if up is not None:
            up.transport.write(data)
            # The request is still on its way: the backend's time to answer runs from its end.
            self.up_deadline = self.server.clock() + self.settings.upstream_timeout
        elif not self.finished:
            if self.pending is None:
                self.pending = []
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > PENDING_MAX:
                self.conn.pause_reading(Pause.PENDING)

    # -- deciding ----------------------------------------------------------------------
    def start(self) -> None:
        """The head is complete and this is the connection's current exchange."""
        server = self.server
        # Decided on the snapshot current now, not the one of the head's first byte: a
        # paused pin must hold every request decided after it is served (router.proxy.hold).
        self.snap, self.settings = server.state.current
        snap = self.snap
        self.answer_id()
        if server.guard.shedding:
            self.shed()
            return
        if self.content_length is not None and self.content_length > self.settings.max_body_bytes:
            self.refuse(ErrorKind.BODY_TOO_LARGE, "request body exceeds limits.max_body_bytes")
            return
        # Only token expiry reads the clock.
        d = decide(self, snap, server.state.health, _time() if snap.jwt_in_sources else 0.0)
        self.decision = d
        if d.error is not None:
            if d.error is ErrorKind.TENANT_PAUSED:
                server.holds.hold(self)          # started again when the pause ends
                return
            extra = ()
            if d.www_authenticate:
                extra = ((b"WWW-Authenticate", d.www_authenticate.encode()),)
            elif d.retry_after is not None:
                extra = ((b"Retry-After", b"%d" % d.retry_after),)
            self.refuse(d.error, d.message, extra)
            return
        if d.tenant is not None:
            server.tenant_load.started(d.tenant, d.stamp, self.method_b)
        limiter = server.tenant_rate
        if limiter is not None and d.tenant is not None:
            wait = limiter.take(d.tenant, server.loop.time())
            if wait:
                server.metrics.rate_limited(d.stamp)
                self.refuse(ErrorKind.RATE_LIMITED, f"tenant {d.tenant!r} is over limits.tenant_rate",
                            ((b"Retry-After", b"%d" % limiter.retry_after(wait)),))
                return
        if d.placed is not None:
            server.metrics.failover(d.placed, d.stamp)
        self.head = self._build_head(d)
        self.dispatch(False)

    def shed(self) -> None:
        """The worker is over limits.max_memory (router.proxy.overload): 503, and the
        connection closes, so the client's retry opens one where there is room."""
        self.server.metrics.overload_shed += 1
        self.keep_alive = False
        retry_after = b"%d" % max(1, math.ceil(self.snap.config.routing.retry_after))
        self.refuse(ErrorKind.OVERLOADED, "the router is over limits.max_memory", ((b"Retry-After", retry_after),))

    def _build_head(self, d) -> bytes:
        """The request head sent upstream (router.proxy.head)."""
        settings = self.settings
        conn = self.conn
        fields = self.lines if self.conn_header is None else without_named(self.lines, self.conn_header)
        tenant_line = None
        if d.tenant is not None:
            tenant_line = b"".join((settings.tenant_header, b": ", d.tenant.encode(), CRLF))
        forwarded = forwarded_fields(self.xff, conn.client_b, self.xf_proto, conn.scheme or settings.forwarded_proto,
                                     conn.forwarded)
        return request_head(self.method_b, self.url, fields, self.host_b, d.backends[0], tenant_line, forwarded,
                            self.request_id, self.chunked, self.content_length, self.upgrade)

    # -- carrying out ------------------------------------------------------------------
    def dispatch(self, force_new: bool) -> None:
        candidates = self.decision.backends
        # One candidate, none tried yet: most stamps, most requests.
        backend = candidates[0] if len(candidates) == 1 and self.tried is None else self._pick()
        if backend is None:
            self.refuse(ErrorKind.UPSTREAM_FAILURE, "no backend of the stamp could be reached")
            return
        pools = self.server.pools
        pool = pools.pools.get(backend) or pools.get(backend)
        self.pool = pool
        self.backend = backend
        pool.begin()
        conn = None if force_new else pool.take()
        if conn is not None:
            self._attach(conn)
        else:
            self.connect_task = self.server.spawn(self._connect(pool))

    def _pick(self) -> str | None:
        """Least outstanding requests among the decision's candidates not yet tried."""
        candidates = self.decision.backends
        tried = self.tried
        if len(candidates) == 1:
            b = candidates[0]
            return None if tried and b in tried else b
        pools = self.server.pools.pools
        n = len(candidates)
        start = self.server.next_rr() % n
        if self.settings.balance_rr:
            for i in range(n):
                b = candidates[(start + i) % n]
                if not tried or b not in tried:
                    return b
            return None
        best = None
        best_load = 1 << 62
        for i in range(n):
            b = candidates[(start + i) % n]
            if tried and b in tried:
                continue
            pool = pools.get(b)
            load = pool.outstanding if pool is not None else 0
            if load < best_load:
                best, best_load = b, load
        return best

    async def _connect(self, pool: BackendPool) -> None:
        try:
            conn = await self.server.pools.connect(pool, self.settings.connect_timeout)
        except asyncio.TimeoutError:
            self.connect_task = None
            self._connect_failed(pool, "timeout")
            return
        except ssl.SSLError as exc:
            # A certificate that does not verify is a failed attempt like a refused
            # connection, never a reason to go on without TLS.
            self.connect_task = None
            verify = getattr(exc, "verify_message", None)
            log.warning("TLS to backend %s of stamp %r failed: %s", pool.address, self.decision.stamp,
                        f"certificate verify failed: {verify}" if verify else exc.reason or exc)
            self._connect_failed(pool, "tls")
            return
        except OSError:
            self.connect_task = None
            self._connect_failed(pool, "connect")
            return
        self.connect_task = None
        if self.finished:
            # The request ended while connecting: the fresh connection is still good.
            if self.pool is pool:
                pool.end()
                self.pool = None
            pool.put(conn)
            return
        self._attach(conn)

    def _connect_failed(self, pool: BackendPool, kind: str) -> None:
        pool.end()
        self.pool = None
        d = self.decision
        self.server.metrics.upstream_error(d.stamp, pool.address, kind)
        self.server.state.health.report(pool.address, False, kind)
        if self.finished:
            return
        # Nothing was sent: trying another backend of the stamp is always safe.
        if self._may_retry():
            self._note_retry(pool.address)
            self.dispatch(force_new=False)
            return
        if kind == "timeout":
            self.refuse(ErrorKind.UPSTREAM_TIMEOUT, f"connecting to a backend of stamp {d.stamp!r} timed out")
        elif kind == "tls":
            self.refuse(ErrorKind.UPSTREAM_FAILURE, f"the TLS handshake with a backend of stamp {d.stamp!r} failed")
        else:
            self.refuse(ErrorKind.UPSTREAM_FAILURE, f"no backend of stamp {d.stamp!r} accepted the connection")

    def _may_retry(self) -> bool:
        settings = self.settings
        return may_retry(len(self.tried or ()), settings.retry_attempts, len(self.decision.backends),
                         self.server.retry_allowed(settings.retry_budget))

    def _note_retry(self, backend: str) -> None:
        if self.tried is None:
            self.tried = []
        self.tried.append(backend)
        if not self.retried:
            self.retried = True
            self.server.retry_began()
        self.server.metrics.retried(self.decision.stamp)

    def _attach(self, conn: UpstreamConnection) -> None:
        conn.serve(self)
        self.upstream = conn
        if self.pending:
            conn.transport.write(self.head + b"".join(self.pending))
            self.pending = None
            self.pending_bytes = 0
            self.conn.resume_reading(Pause.PENDING)
        else:
            conn.transport.write(self.head)
        if self.server.access_log is not None:
            self.t_up = _perf_counter()
        self.up_deadline = self.server.clock() + self.settings.upstream_timeout
        if self.conn.flow.write_paused:
            conn.pause_reading()

    def _detach(self, conn: UpstreamConnection, reusable: bool) -> None:
        self.upstream = None
        self.up_deadline = INF
        pool = self.pool
        if pool is not None:
            pool.end()
            self.pool = None
        conn.release(reusable)

    # -- response side (called by UpstreamConnection) --------------------------------------
    def read_begins(self) -> None:
        """An upstream read is about to be parsed: what it brings for the client collects
        in `out`, to go in one write."""
        self.read_started = self.resp_started
        self.read_sent = self.bytes_out
        self.out = []

    def read_ends(self) -> None:
        """The read is parsed. If the response goes on past it (a complete one has flushed
        already), send what came, and if head or body bytes came, the backend has
        upstream_timeout again from now: once per read, not per callback, since most
        responses end within their first read."""
        out = self.out
        if out is None:
            return
        if out:
            self.flush()
        self.out = None
        if self.bytes_out != self.read_sent or self.resp_started is not self.read_started:
            self.up_deadline = self.server.clock() + self.settings.upstream_timeout

    def head_spans_reads(self, conn: UpstreamConnection, n: int) -> None:
        """A read ended and the response head is not complete (rare): what httptools holds
        of it is bounded like a request's, by limits.max_header_bytes (plus the read
        that passed it)."""
        self.resp_head_bytes += n
        if self.resp_head_bytes > self.settings.max_header_bytes:
            self.upstream_failed(conn, "protocol", "the backend's response head exceeds limits.max_header_bytes")

    def interim_response(self, status: int, lines: list[bytes] | None) -> None:
        """A 1xx before the final response: relayed to HTTP/1.1 clients, then forgotten."""
        if not self.http10 and not self.finished:
            self._cw(status_line(status) + b"".join(lines or ()) + CRLF)

    def response_head(self, status: int, lines: list[bytes] | None, length: bytes | None, chunked: bool) -> None:
        # (up_deadline moves on once per upstream read: read_ends)
        self.status = status
        self.resp_started = True
        relay, self.until_close, closes = response_framing(status, self.method_b == b"HEAD", chunked,
                                                           length is not None, self.http10)
        close = closes or self.close_after or not self.keep_alive or self.server.draining
        self.framing = relay
        self.close_after = close
        stamp_line = failover_line = None
        stamp_lines = self.settings.stamp_lines
        if stamp_lines:
            d = self.decision
            stamp_line = stamp_lines[d.stamp]
            if d.placed is not None:
                failover_line = self.settings.stamp_header + b"-Failover: " + d.placed.encode() + CRLF
        head = response_head(status, lines, length, relay, stamp_line, failover_line, close, self.http10)
        # While an upstream read is being parsed the head goes into `out`, joined once
        # with the body that follows it.
        out = self.out
        if out is not None:
            out.append(head)
        else:
            self.conn.transport.write(head)

    def _cw(self, data: bytes) -> None:
        out = self.out
        if out is not None:
            out.append(data)
        else:
            self.conn.transport.write(data)

    def flush(self) -> None:
        out = self.out
        self.out = None
        if out and not self.conn.closed:
            self.conn.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def response_body(self, body: bytes) -> None:
        if self.finished:
            return
        self.bytes_out += len(body)
        if self.framing == _R_CHUNKED:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        out = self.out
        if out is not None:
            out.append(body)
        else:
            self.conn.transport.write(body)

    def response_complete(self, conn: UpstreamConnection, reusable: bool, trailers: list[bytes] | None) -> None:
        if self.framing == _R_CHUNKED and not self.finished:
            self._cw(b"0\r\n" + b"".join(trailers or ()) + CRLF)
        out = self.out
        if out:
            self.out = None
            if not self.conn.closed:
                self.conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
        status = self.status
        self.server.state.health.report(self.backend, status < 500, "5xx" if status >= 500 else "")
        # A backend that answered before taking the whole body cannot be reused.
        self._detach(conn, reusable and self.req_done)
        if not self.req_done:
            self.close_after = True
        self.finish(status)

    def upstream_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The backend answered 101: both connections become one byte tunnel."""
        pool = self.pool
        if pool is not None:
            pool.end()
            pool.forget(conn)
            self.pool = None
        self.upstream = None
        self.up_deadline = INF
        self.flush()
        if self.decision.tenant is not None:
            self.server.tenant_load.tunnel_opened(conn, self.decision.tenant, self.decision.stamp)
        self.conn.open_tunnel(conn, rest)
        self.finish(101)

    def upstream_failed(self, conn: UpstreamConnection, kind: str, message: str) -> None:
        """The backend sent something that is not HTTP: never relay it, never reuse it."""
        self.fail_kind, self.fail_message = kind, message
        conn.close()   # connection_lost follows and ends the exchange through upstream_lost

    def upstream_closed(self, conn: UpstreamConnection, exc: Exception | None, trailers: list[bytes] | None) -> None:
        """The backend closed the connection while serving this exchange: the end of a
        body delimited by the close (RFC 9112 6.3 rule 8), else a loss."""
        if self.until_close:
            self.response_complete(conn, False, trailers)
        else:
            self.upstream_lost(conn, exc)

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The backend connection ended before the response did."""
        if self.upstream is not conn:
            return
        backend = self.backend
        stale_reuse = conn.reused and not conn.got_bytes
        self._detach(conn, False)
        if self.finished:
            return
        stamp = self.decision.stamp
        kind = self.fail_kind
        safe = replayable(self.replay_ok, self.method_b, self.req_done)
        nxt = after_loss(self.resp_started, stale_reuse, safe, kind, safe and not self.resp_started
                         and self._may_retry())
        if nxt == Next.RESEND:
            self._resend_from_replay()
            self.dispatch(force_new=True)
            return
        self.server.metrics.upstream_error(stamp, backend, kind)
        self.server.state.health.report(backend, False, kind)
        if nxt == Next.RETRY:
            self._note_retry(backend)
            self._resend_from_replay()
            self.fail_kind, self.fail_message = "reset", None
            self.dispatch(force_new=False)
        elif nxt == Next.REFUSE:
            self.refuse(ErrorKind.UPSTREAM_FAILURE, self.fail_message
                        or f"backend of stamp {stamp!r} closed the connection before answering")
        else:
            # Part of the response is already with the client: all we can do is cut it short.
            self.close_after = True
            self.finish(self.status, aborted=True)

    def _resend_from_replay(self) -> None:
        self.pending = list(self.replay or ())
        self.pending_bytes = self.replay_bytes

    def upstream_timed_out(self) -> None:
        """Nothing moved for timeouts.upstream. The one the exchange was waiting for is at
        fault: a client that stopped sending its body, or reads nothing of its response,
        is cut off without blaming the backend (a few slow clients must not eject it)."""
        conn = self.upstream
        if conn is None:
            return
        flow = self.conn.flow
        if self.resp_started:
            client_stalled = flow.write_paused
        else:
            client_stalled = not self.req_done and not flow.reasons & Pause.PEER_FULL
        backend = self.backend
        self._detach(conn, False)
        if client_stalled:
            if self.resp_started:
                self.close_after = True
                self.finish(self.status, aborted=True)
            else:
                self.refuse(ErrorKind.REQUEST_TIMEOUT, "the request body stopped arriving for timeouts.upstream")
            return
        self.server.metrics.upstream_error(self.decision.stamp, backend, "timeout")
        self.server.state.health.report(backend, False, "timeout")
        if not self.resp_started:
            self.refuse(ErrorKind.UPSTREAM_TIMEOUT, f"backend of stamp {self.decision.stamp!r} did not answer in time")
        else:
            self.close_after = True
            self.finish(self.status, aborted=True)

    # -- ending ------------------------------------------------------------------------
    def refuse(self, kind: ErrorKind, message: str, extra: tuple = ()) -> None:
        """Answer with an error, unless a response is already under way."""
        if self.finished:
            return
        if self.resp_started:
            self.close_after = True
            self.finish(self.status, aborted=True)
            return
        # An unread body (or an upgrade) leaves the connection out of step: close it.
        close = not self.req_done or self.upgrade is not None or not self.keep_alive or self.server.draining
        d = self.decision
        settings = self.server.state.settings
        if d is not None and d.stamp is not None and settings.stamp_header:
            extra = extra + ((settings.stamp_header, d.stamp.encode()),)
        self.close_after = close
        self.conn.transport.write(error_response(kind, message, self.request_id or b"-", close=close,
                                                 extra_headers=extra, head_only=self.method_b == b"HEAD"))
        self.finish(STATUS[kind])

    def _drop_upstream(self) -> None:
        """Let go of the upstream side mid-request: close it, or stop connecting (or
        leave the hold queue)."""
        d = self.decision
        if d is not None and d.error is ErrorKind.TENANT_PAUSED:
            self.server.holds.drop(self)
        conn = self.upstream
        if conn is not None:
            self._detach(conn, False)
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
            if self.pool is not None:
                self.pool.end()
                self.pool = None

    def refuse_mid_body(self, kind: ErrorKind, message: str) -> None:
        self._drop_upstream()
        self.pending = None
        self.replay_ok = False
        self.replay = None
        self.refuse(kind, message)

    def abort(self, status: int = 499) -> None:
        """The client went away (499, nginx's code for it), or sent something unparsable."""
        if self.finished:
            return
        self._drop_upstream()
        self.finish(status, aborted=True)

    def finish(self, status: int, aborted: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self.status = status
        server = self.server
        if self.head_done:
            server.metrics.request_ended()
        if self.retried:
            server.retry_ended()
        d = self.decision
        if d is not None and d.error is None and d.tenant is not None:
            server.tenant_load.ended(d.tenant, d.stamp, self.method_b)
        elapsed = _perf_counter() - self.t0
        metrics = server.metrics
        stats = metrics.stamps.get(d.stamp) if d is not None else None
        if stats is None:
            # A refusal still belongs to the tenant's stamp when there is one: the stamp
            # that could not serve, or the tenant's pin (read-only refusals).
            label = None
            if d is not None:
                label = d.stamp or d.placed or (self.snap.pins.get(d.tenant) if d.tenant else None)
            stats = metrics.stamp(label)
        stats.observe(status, elapsed)
        if server.access_log is not None:
            server.access_log.write(self, elapsed)
        self.conn.exchange_done(self, aborted)
