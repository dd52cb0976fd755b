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
from router.errors import STATUS, ErrorKind
from router.proxy.forwarded import forwarded_client
from router.proxy.http import CONNECTION_OPTIONS, CRLF, STATUS_LINES, connection_tokens, error_response, status_line
from router.proxy.upstream import F_CHUNKED, F_LENGTH, F_NONE, F_RAW_CLOSE, BackendPool, UpstreamConnection

if TYPE_CHECKING:
    from router.proxy.downstream import ClientConnection

log = logging.getLogger("router.proxy")

# A request body is kept for a resend while it is at most this large; past it, the
# request can only go to the first backend that accepted it.
REPLAY_MAX = 64 * 1024
# Body bytes held while the upstream connection is being opened, before reading pauses.
PENDING_MAX = 256 * 1024
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
INF = float("inf")
_time = time.time
_perf_counter = time.perf_counter


class Exchange:
    # The attributes every request touches are slots, set in __init__: slot reads and
    # writes are the cheapest Python has, and no per-request dict is built. (An instance
    # dict is shared-key only up to 30 names per class; past that, the requests of a
    # process that had once set enough different names each paid for a private dict.)
    # The rest are rare (bodies, retries, trailers, upgrades, interim responses): they
    # keep class-level defaults and go to the instance __dict__ only when a path sets them.
    __slots__ = (
        "conn", "server", "snap", "settings", "t0", "lines",
        # request head
        "url", "method_b", "host_b", "tenant_header", "authorization_b", "request_id", "xff", "xf_proto",
        "conn_header", "upgrade", "content_length", "chunked", "http10", "head_done", "keep_alive",
        # carrying out
        "decision", "head", "pool", "backend", "upstream", "up_deadline", "req_done",
        # response
        "out", "resp_lines", "resp_length", "resp_chunked", "resp_conn", "resp_close", "status",
        "resp_started", "framing", "close_after", "bytes_out", "finished",
        "__dict__",
    )
    # rare: request
    geo_b = None
    trailers: list[bytes] | None = None
    # rare: carrying out
    t_up = 0.0                          # set only when the access log is on
    tried: list[str] | None = None
    connect_task = None
    pending: list[bytes] | None = None
    pending_bytes = 0
    replay: list[bytes] | None = None   # what was sent upstream, kept for a resend
    replay_ok = True                    # False once the body outgrew REPLAY_MAX
    replay_bytes = body_in = 0
    retried = False
    # rare: response, as parsed from the backend (UpstreamConnection writes these)
    resp_upgrade: bytes | None = None
    resp_trailers: list[bytes] | None = None
    until_close = False       # body ends when the backend closes (RFC 9112 6.3 rule 8)
    fail_kind = "reset"       # how the upstream connection failed, for metrics and the answer
    fail_message: str | None = None

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
        server = self.server = conn.server
        # Each request is decided and carried out on the snapshot current when it began.
        self.snap, self.settings = server.state.current
        self.t0 = _perf_counter()   # durations: uvloop's loop.time() only has 1 ms resolution
        self.lines: list[bytes] = []
        # request head (ClientConnection fills these)
        self.url = b""
        self.method_b = b"GET"
        self.host_b = self.tenant_header = self.authorization_b = self.request_id = None
        self.xff = self.xf_proto = self.conn_header = self.upgrade = self.content_length = None
        self.chunked = self.http10 = self.head_done = self.req_done = False
        self.keep_alive = True
        # carrying out
        self.decision = self.pool = self.backend = self.upstream = None
        self.head = b""
        self.up_deadline = INF
        # response, as parsed from the backend (UpstreamConnection writes these) ...
        self.resp_lines = self.resp_length = self.resp_conn = None
        self.resp_chunked = self.resp_close = False
        # ... and as relayed to the client. While an upstream read is being parsed,
        # client-bound bytes collect in `out` and go out in one write: head and body of
        # a small response cost one send(), not two.
        self.out = None
        self.status = self.bytes_out = 0
        self.framing = F_NONE
        self.resp_started = self.close_after = self.finished = False

    @property
    def client(self) -> str:
        # Read by geo placement and the access log only: the walk costs nothing otherwise.
        conn = self.conn
        if conn.trusted and self.xff:
            return forwarded_client(self.xff, conn.client_ip, self.settings.trusted)
        return conn.client_ip

    # -- request side ------------------------------------------------------------------
    def on_body(self, chunk: bytes) -> None:
        n = len(chunk)
        self.body_in += n
        if self.body_in > self.settings.max_body_bytes:
            self.refuse_mid_body(ErrorKind.BODY_TOO_LARGE, "request body exceeds limits.max_body_bytes")
            return
        data = b"%x\r\n%b\r\n" % (n, chunk) if self.chunked else chunk
        self._send_body(data)

    def on_request_done(self) -> None:
        """The end of a chunked body: send the last chunk and the trailers."""
        self.req_done = True
        self._send_body(b"0\r\n" + (b"".join(self.trailers) if self.trailers else b"") + CRLF)

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
        elif not self.finished:
            if self.pending is None:
                self.pending = []
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > PENDING_MAX:
                self.conn.pause_reading(4)

    # -- deciding ----------------------------------------------------------------------
    def start(self) -> None:
        """The head is complete and this is the connection's current exchange."""
        server = self.server
        snap = self.snap
        if self.request_id is None:
            self.request_id = server.next_request_id()
        if server.shedding:
            self.shed()
            return
        if self.content_length is not None and self.content_length > self.settings.max_body_bytes:
            self.refuse(ErrorKind.BODY_TOO_LARGE, "request body exceeds limits.max_body_bytes")
            return
        # Only token expiry reads the clock.
        d = decide(self, snap, server.state.health, _time() if snap.jwt_in_sources else 0.0)
        self.decision = d
        if d.error is not None:
            extra = ()
            if d.www_authenticate:
                extra = ((b"WWW-Authenticate", d.www_authenticate.encode()),)
            elif d.retry_after is not None:
                extra = ((b"Retry-After", b"%d" % d.retry_after),)
            self.refuse(d.error, d.message, extra)
            return
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
        """The request head sent upstream. Called once per request: the forwarded lines
        collected by the parser get the router's own appended in place."""
        # The common lines are joins rather than %-formatting or `+`: bytes formatting and
        # each concatenation (buffer protocol on both operands, an allocation) cost more.
        lines = self.lines
        if self.conn_header is not None:
            # RFC 9110 7.6.1: fields named in Connection are hop-by-hop too.
            named = connection_tokens(self.conn_header) - CONNECTION_OPTIONS
            if named:
                lines = [ln for ln in lines if ln.split(b":", 1)[0].strip().lower() not in named]
        host = self.host_b
        if host is None:
            lines.append(b"Host: " + d.backends[0].encode() + CRLF)
        if d.tenant is not None:
            lines.append(b"".join((self.settings.tenant_header, b": ", d.tenant.encode(), CRLF)))
        proto = self.xf_proto
        if self.xff:
            lines.append(b"X-Forwarded-For: %s, %s\r\nX-Forwarded-Proto: %s\r\n"
                         % (self.xff, self.conn.client_b, proto or self.conn.scheme or self.settings.forwarded_proto))
        elif proto is None:
            lines.append(self.conn.forwarded)
        else:
            lines.append(b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (self.conn.client_b, proto))
        if host is not None:
            lines.append(b"".join((b"X-Forwarded-Host: ", host, b"\r\nX-Request-ID: ", self.request_id, CRLF)))
        else:
            lines.append(b"X-Request-ID: " + self.request_id + CRLF)
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        elif self.content_length is not None:
            lines.append(b"Content-Length: %d\r\n" % self.content_length)
        if self.upgrade is not None:
            lines.append(b"Connection: Upgrade\r\nUpgrade: " + self.upgrade + CRLF)
        lines.append(CRLF)
        # The request line goes in front of the fields: one copy of the head, not two.
        lines.insert(0, b"".join((self.method_b, b" ", self.url, b" HTTP/1.1\r\n")))
        return b"".join(lines)

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
        pool.outstanding += 1
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
                pool.outstanding -= 1
                self.pool = None
            pool.put(conn)
            return
        self._attach(conn)

    def _connect_failed(self, pool: BackendPool, kind: str) -> None:
        pool.outstanding -= 1
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
        server = self.server
        if len(self.tried or ()) >= self.settings.retry_attempts:
            return False
        if len(self.decision.backends) <= len(self.tried or ()) + 1:
            return False
        return server.retry_allowed(self.settings.retry_budget)

    def _note_retry(self, backend: str) -> None:
        if self.tried is None:
            self.tried = []
        self.tried.append(backend)
        if not self.retried:
            self.retried = True
            self.server.retrying += 1
        self.server.metrics.stamp(self.decision.stamp).retries += 1

    def _attach(self, conn: UpstreamConnection) -> None:
        conn.exchange = self
        self.upstream = conn
        if self.pending:
            conn.transport.write(self.head + b"".join(self.pending))
            self.pending = None
            self.pending_bytes = 0
            self.conn.resume_reading(4)
        else:
            conn.transport.write(self.head)
        if self.server.access_log is not None:
            self.t_up = _perf_counter()
        self.up_deadline = self.server.loop.time() + self.settings.upstream_timeout
        if self.conn.write_paused:
            conn.pause_reading()

    def _detach(self, conn: UpstreamConnection, reusable: bool) -> None:
        self.upstream = None
        self.up_deadline = INF
        pool = self.pool
        if pool is not None:
            pool.outstanding -= 1
            self.pool = None
        conn.exchange = None
        if reusable and not conn.closed:
            conn.got_bytes = False
            conn.pool.put(conn)
        else:
            conn.close()

    # -- response side (called by UpstreamConnection) --------------------------------------
    def apply_response_connection(self, status: int) -> None:
        """The response's Connection header: close, and the fields it names (RFC 9110 7.6.1)."""
        tokens = connection_tokens(self.resp_conn)
        if b"close" in tokens:
            self.resp_close = True
        lines = self.resp_lines or []
        named = tokens - CONNECTION_OPTIONS
        if named:
            lines = [ln for ln in lines if ln.split(b":", 1)[0].strip().lower() not in named]
        if status == 101:
            lines.append(b"Connection: " + self.resp_conn + CRLF)
            if self.resp_upgrade is not None:
                lines.append(b"Upgrade: " + self.resp_upgrade + CRLF)
        self.resp_lines = lines

    def interim_response(self, status: int) -> None:
        """A 1xx before the final response: relayed to HTTP/1.1 clients, then forgotten."""
        if not self.http10 and not self.finished:
            self._cw(status_line(status) + b"".join(self.resp_lines or ()) + CRLF)
        self.resp_lines = self.resp_conn = self.resp_upgrade = None
        self.resp_close = False

    def response_head(self, conn: UpstreamConnection, status: int) -> None:
        # (up_deadline moves on once per upstream read: UpstreamConnection.data_received)
        self.status = status
        self.resp_started = True
        close = self.close_after or not self.keep_alive or self.server.draining
        length = self.resp_length
        # RFC 9112 6.3: how the body is delimited, and how it will be to the client.
        if status == 101 or self.method_b == b"HEAD" or status == 204 or status == 304:
            framing = F_NONE
        elif self.resp_chunked:
            framing = F_CHUNKED
        elif length is not None:
            framing = F_LENGTH
        else:
            self.until_close = True
            framing = F_CHUNKED
        if framing == F_CHUNKED and self.http10:
            framing = F_RAW_CLOSE   # HTTP/1.0 has no chunked coding: the close ends the body
            close = True
        self.framing = framing
        self.close_after = close
        # While an upstream read is being parsed the head goes straight into `out`, joined
        # once with the body that follows it.
        out = self.out
        parts = out if out is not None else []
        # The standard reason phrase, not the backend's: clients ignore it (RFC 9112 4),
        # and taking it from a table spares a parser callback per response.
        parts.append(STATUS_LINES.get(status) or status_line(status))
        if self.resp_lines:
            parts += self.resp_lines
        if length is not None and framing != F_CHUNKED and framing != F_RAW_CLOSE:
            parts.append(b"".join((b"Content-Length: ", length, CRLF)))
        elif framing == F_CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        stamp_lines = self.settings.stamp_lines
        if stamp_lines:
            d = self.decision
            parts.append(stamp_lines[d.stamp])
            if d.placed is not None:
                parts.append(self.settings.stamp_header + b"-Failover: " + d.placed.encode() + CRLF)
        if status != 101:
            if close:
                parts.append(b"Connection: close\r\n")
            elif self.http10:
                parts.append(b"Connection: keep-alive\r\n")
        parts.append(CRLF)
        if out is None:
            self.conn.transport.write(b"".join(parts))

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
        if self.framing == F_CHUNKED:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        out = self.out
        if out is not None:
            out.append(body)
        else:
            self.conn.transport.write(body)

    def response_complete(self, conn: UpstreamConnection, reusable: bool) -> None:
        if self.framing == F_CHUNKED and not self.finished:
            self._cw(b"0\r\n" + b"".join(self.resp_trailers or ()) + CRLF)
        out = self.out
        if out:
            self.out = None
            if not self.conn.closed:
                self.conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
        status = self.status
        self.server.state.health.report(conn.pool.address, status < 500, "5xx" if status >= 500 else "")
        # A backend that answered before taking the whole body cannot be reused.
        self._detach(conn, reusable and self.req_done)
        if not self.req_done:
            self.close_after = True
        self.finish(status)

    def upstream_upgraded(self, conn: UpstreamConnection, rest: bytes) -> None:
        """The backend answered 101: both connections become one byte tunnel."""
        pool = self.pool
        if pool is not None:
            pool.outstanding -= 1
            pool.forget(conn)
            self.pool = None
        self.upstream = None
        self.up_deadline = INF
        conn.exchange = None
        self.flush()
        self.conn.open_tunnel(conn, rest)
        self.finish(101)

    def upstream_failed(self, conn: UpstreamConnection, kind: str, message: str) -> None:
        """The backend sent something that is not HTTP: never relay it, never reuse it."""
        self.fail_kind, self.fail_message = kind, message
        conn.close()   # connection_lost follows and ends the exchange through upstream_lost

    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        """The backend connection ended before the response did."""
        if self.upstream is not conn:
            return
        backend = conn.pool.address
        stale_reuse = conn.reused and not conn.got_bytes
        self._detach(conn, False)
        if self.finished:
            return
        stamp = self.decision.stamp
        kind = self.fail_kind
        if not self.resp_started:
            # Safe to send again: everything sent is still held, and either the method is
            # idempotent or the backend never had the whole request to act on.
            replayable = self.replay_ok and (self.method_b in IDEMPOTENT or not self.req_done)
            if stale_reuse and replayable and kind == "reset":
                # Most likely a pooled connection the backend had closed before the request
                # reached it; but it may also have read it and died, so only a request that
                # is safe to repeat goes again (nginx's proxy_next_upstream default, too).
                self._resend_from_replay()
                self.dispatch(force_new=True)
                return
            self.server.metrics.upstream_error(stamp, backend, kind)
            self.server.state.health.report(backend, False, kind)
            if replayable and self._may_retry():
                self._note_retry(backend)
                self._resend_from_replay()
                self.fail_kind, self.fail_message = "reset", None
                self.dispatch(force_new=False)
                return
            self.refuse(ErrorKind.UPSTREAM_FAILURE, self.fail_message
                        or f"backend of stamp {stamp!r} closed the connection before answering")
            return
        self.server.metrics.upstream_error(stamp, backend, kind)
        self.server.state.health.report(backend, False, kind)
        # Part of the response is already with the client: all we can do is cut it short.
        self.close_after = True
        self.finish(self.status, aborted=True)

    def _resend_from_replay(self) -> None:
        self.pending = list(self.replay or ())
        self.pending_bytes = self.replay_bytes

    def upstream_timed_out(self) -> None:
        conn = self.upstream
        if conn is None:
            return
        backend = conn.pool.address
        self._detach(conn, False)
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
        """Let go of the upstream side mid-request: close it, or stop connecting."""
        conn = self.upstream
        if conn is not None:
            self._detach(conn, False)
        if self.connect_task is not None:
            self.connect_task.cancel()
            self.connect_task = None
            if self.pool is not None:
                self.pool.outstanding -= 1
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
            server.metrics.in_flight -= 1
        if self.retried:
            server.retrying -= 1
        d = self.decision
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
