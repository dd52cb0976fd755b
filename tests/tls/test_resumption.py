"""Session resumption across the router's workers: the ticket keys live in the SSL context
the supervisor created before forking them."""

from __future__ import annotations

import socket
import ssl

from tests.support.router_proc import stamp
from tests.tls.support import https_doc


def handshake(port: int, ctx: ssl.SSLContext, session=None) -> tuple[ssl.SSLSession, bool]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as tls:
        tls.sendall(b"GET /r HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        tls.recv(65536)                  # TLS 1.3 tickets come after the handshake
        return tls.session, tls.session_reused


def test_sessions_resume_with_two_workers_accepting(pki, backends, router_proc):
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])],
                                  "routing": {"sources": ["header"], "anonymous": "stamp:eu"}},
                                 [pki.issue("api", "api.example.com")])
    doc["process"] = {"workers": 2}
    router = router_proc(doc, **where)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = pki.client_context(maximum_version=version, minimum_version=version)
        session, reused = handshake(port, ctx)
        assert not reused
        results = [handshake(port, ctx, session)[1] for _ in range(20)]
        # Twenty connections, accepted by whichever worker wakes first: every one resumed,
        # whichever worker issued the ticket.
        assert all(results), (version, results)
