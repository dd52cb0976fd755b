"""Client connections of listen.https, and the http listener's redirect to it.

A TLS connection is admitted (counted against listen.max_connections) when TCP accepts
it, before its handshake: a client that never finishes one holds a slot until
timeouts.tls_handshake, like any slow client. Its handshake's failures arrive here as exceptions to classify and count (a plaintext request on
the TLS port, an old protocol version, no shared cipher, a client certificate refused,
a timeout) instead of as tracebacks in the log.

Once up, a connection serves requests as a plain one does, with two differences: each
request's Host must be the name the client gave in SNI (else 421, see
router.tls.names.host_matches_sni), and X-Forwarded-Proto says https.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING

from cryptography import x509

from router.errors import ErrorKind, RouterError
from router.proxy.batch import BatchedTransport, batch_for
from router.proxy.downstream import ClientConnection
from router.proxy.http import CRLF
from router.tls.names import covers, host_matches_sni
from router.tls.records import READ_BUFFER

if TYPE_CHECKING:
    from router.proxy.server import ProxyServer
    from router.tls.server import ServerTls

log = logging.getLogger("stamp_router.tls")

# How a failed handshake is counted (stamp_router_tls_handshake_failures{reason}).
_REASONS = {
    "HTTP_REQUEST": "plaintext_http", "HTTPS_PROXY_REQUEST": "plaintext_http",
    "WRONG_VERSION_NUMBER": "protocol_version", "UNSUPPORTED_PROTOCOL": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version", "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher", "NO_CIPHERS_AVAILABLE": "no_shared_cipher",
    "CALLBACK_FAILED": "unknown_sni", "TLSV1_ALERT_UNRECOGNIZED_NAME": "unknown_sni",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client_certificate", "CERTIFICATE_VERIFY_FAILED": "client_certificate",
}


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return _REASONS.get(exc.reason or "", "tls_error")
    if isinstance(exc, (asyncio.TimeoutError, ConnectionAbortedError)):
        return "timeout"      # uvloop aborts a handshake past ssl_handshake_timeout
    return "closed"           # the client went away mid-handshake


def peer_common_name(obj: ssl.SSLObject) -> str | None:
    """The verified client certificate's subject CN (the `mtls` tenant source)."""
    der = obj.getpeercert(binary_form=True)
    if not der:
        return None
    attrs = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


# Connections taken per wakeup of the listener: a burst is accepted in one callback, and
# the loop still gets back to the connections already open after this many.
ACCEPT_BATCH = 64
# After an accept failing for want of a resource (EMFILE: listen.max_connections above
# the file limit), the listener rests this long instead of being polled in a tight loop.
ACCEPT_RETRY_DELAY = 0.1


async def serve_https(server: ProxyServer, listener: socket.socket) -> None:
    """Accept on listen.https until cancelled; each connection's handshake runs in a task
    of its own.

    Accepting here rather than through create_server(ssl=...) is what lets a connection
    count from accept and its handshake's failure arrive as an exception: uvloop tells
    neither the protocol nor the loop's exception handler of a failed server handshake.
    The listener has one reader for as long as this runs (loop.sock_accept would add and
    remove one per connection: two epoll changes each, with a future).
    """
    loop = server.loop
    fd = listener.fileno()
    resting = False                            # accept is failing for want of a resource

    def on_readable() -> None:
        nonlocal resting
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue                       # gone before it was taken
            except OSError as exc:
                if not resting:              # once per streak, not ten lines a second
                    log.error("https: accept failed (%s); retrying every %.1f s", exc.strerror or exc,
                              ACCEPT_RETRY_DELAY)
                resting = True
                loop.remove_reader(fd)
                loop.call_later(ACCEPT_RETRY_DELAY, resume)
                return
            resting = False
            # Left blocking: connect_accepted_socket makes it non-blocking itself (one
            # ioctl per connection, not two).
            conn = TlsConnection(server, addr)
            if not server.admit(conn):
                sock.close()
                continue
            server.spawn(conn.handshake(sock, server.tls.server))

    def resume() -> None:
        if not stopped.done():
            loop.add_reader(fd, on_readable)

    stopped = loop.create_future()
    loop.add_reader(fd, on_readable)
    try:
        await stopped                          # until cancelled (stop_accepting, drain)
    finally:
        loop.remove_reader(fd)


class TlsConnection(ClientConnection):
    __slots__ = ("sni", "peer_cn", "default_names", "host_ok")

    def __init__(self, server: ProxyServer, addr) -> None:
        super().__init__(server)
        self.sni: str | None = None
        self.peer_cn: str | None = None
        self.default_names: tuple[str, ...] = ()
        self.host_ok: bytes | None = None      # the Host last found to match, as sent
        self.scheme = b"https"
        if addr:
            self.client_ip = addr[0]
            self.client_b = self.client_ip.encode()
        # Until the handshake ends, the sweep's backstop (the handshake has its own timeout).
        self.deadline = server.loop.time() + server.tls_handshake_timeout + server.state.settings.header_timeout

    async def handshake(self, sock: socket.socket, tls: ServerTls) -> None:
        server = self.server
        try:
            await server.loop.connect_accepted_socket(lambda: self, sock, ssl=tls.base,
                                                      ssl_handshake_timeout=server.tls_handshake_timeout)
        except asyncio.CancelledError:
            sock.close()
            self.connection_lost(None)
            raise
        except (OSError, asyncio.TimeoutError) as exc:    # ssl.SSLError is an OSError
            server.metrics.tls_handshake_failed(failure_reason(exc))
            sock.close()
            self.connection_lost(exc)

    def connection_made(self, transport: asyncio.Transport) -> None:
        # The TLS transport, after the handshake; admitted already at accept. Its writes
        # are batched like a plain connection's (router.proxy.batch): the encryption and
        # the socket write of a response happen at the end of the event loop's wake-up.
        transport = BatchedTransport(transport, batch_for(self.server.loop))
        self.transport = transport
        if self.closed:                    # the router began draining meanwhile
            transport.close()
            return
        obj = transport.get_extra_info("ssl_object")
        self.sni = getattr(obj, "sni", None)
        fallback = getattr(obj, "sni_fallback", None)
        if fallback is not None:
            self.server.metrics.sni_fallbacks[fallback] = self.server.metrics.sni_fallbacks.get(fallback, 0) + 1
        if self.sni is None:
            pairs = self.server.tls.server.certs.pairs
            self.default_names = pairs[0].names if pairs else ()
        if obj.context.verify_mode != ssl.CERT_NONE:
            self.peer_cn = peer_common_name(obj)
        self.deadline = self.server.loop.time() + self.server.state.settings.header_timeout

    # uvloop decrypts into this buffer instead of a new 256 KiB bytes object per read
    # (router.tls.records); the bytes are taken out before anything else can read into it.
    def get_buffer(self, sizehint: int) -> memoryview:
        return READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(READ_BUFFER[:nbytes].tobytes())

    def on_headers_complete(self) -> None:
        host = self.cur.host_b
        if host is not None and host == self.host_ok:
            # A keep-alive client sends the same Host each time: checked once per connection.
            ClientConnection.on_headers_complete(self)
            return
        sni = self.sni
        if sni is not None:
            ok = host_matches_sni(host, sni)
        else:
            # No SNI: the Host must be a name of the certificate this connection got.
            ok = host is None or any(covers(n, host.decode("latin-1").rsplit(":", 1)[0]) for n in self.default_names)
        if not ok:
            self.server.metrics.misdirected += 1
            raise RouterError(ErrorKind.MISDIRECTED, "the Host is not the name this TLS connection was opened "
                                                     "for (SNI); open a connection for it")
        self.host_ok = host
        ClientConnection.on_headers_complete(self)


class RedirectConnection(ClientConnection):
    """listen.http with listen.redirect_http: every request gets 308 to its https URL."""

    __slots__ = ()

    def on_headers_complete(self) -> None:
        ex = self.cur
        server = self.server
        if ex.host_b is None:
            raise RouterError(ErrorKind.BAD_REQUEST, "missing Host header: no https URL to redirect to")
        host = ex.host_b.decode("latin-1")
        host = host[:host.rindex("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
        port = server.https_port
        location = b"https://%s%s%s" % (host.encode("latin-1"), b"" if port == 443 else b":%d" % port, ex.url)
        rid = server.next_request_id()
        server.metrics.redirects += 1
        self.transport.write(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: " + location + CRLF +
                             b"Content-Length: 0\r\nX-Request-ID: " + rid + b"\r\nConnection: close\r\n\r\n")
        self.close()
