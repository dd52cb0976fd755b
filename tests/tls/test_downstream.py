"""listen.https with a real router process: SNI selection, 421, protocol floor, bad input."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess

import pytest

from tests.support.router_proc import stamp
from tests.support.servers import wait_until
from tests.tls.support import https_doc, https_get, peer_names

ROUTING = {"sources": ["subdomain", "header"], "domains": ["t.example.com"], "unpinned": "hash"}


@pytest.fixture
def site(pki, backends, router_proc):
    """One router with an exact ECDSA pair, a wildcard in RSA and ECDSA, and http beside."""
    eu, = backends("eu-1")
    pairs = [pki.issue("api", "api.example.com"),
             pki.issue("wild-ec", "*.t.example.com", "t.example.com"),
             pki.issue("wild-rsa", "*.t.example.com", "t.example.com", key_type="RSA")]
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])], "routing": ROUTING}, pairs,
                          redirect_http=True)
    doc["timeouts"] = {"tls_handshake": "1s"}
    router = router_proc(doc, **where)
    return router, port, eu


def test_sni_picks_the_exact_then_the_wildcard_then_the_first(site, pki):
    router, port, _ = site
    ctx = pki.client_context()
    assert peer_names(port, ctx, "api.example.com") == ["api.example.com"]
    assert peer_names(port, ctx, "acme.t.example.com") == ["*.t.example.com", "t.example.com"]
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    # An unknown name and no SNI at all get the first certificate (and a client that
    # verifies refuses it); the connections served that way are counted.
    assert peer_names(port, unverified, "nobody.example.org") == ["api.example.com"]
    assert peer_names(port, unverified, None) == ["api.example.com"]
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_names(port, ctx, "nobody.example.org")
    assert router.metric("stamp_router_tls_sni_fallbacks_total", sni="unknown") == 1
    assert router.metric("stamp_router_tls_sni_fallbacks_total", sni="none") == 1


def test_rsa_and_ecdsa_for_the_same_names_each_reach_their_clients(site, pki):
    _, port, _ = site
    for suite, key in (("ECDHE-RSA-AES128-GCM-SHA256", "rsa"), ("ECDHE-ECDSA-AES128-GCM-SHA256", "ec")):
        ctx = pki.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(suite)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="acme.t.example.com") as tls:
            assert tls.cipher()[0] == suite, key


def test_requests_over_tls_say_https_and_a_foreign_host_is_421(site, pki):
    router, port, eu = site
    ctx = pki.client_context()
    status, headers, body = https_get(port, ctx, "acme.t.example.com", "/x")
    assert status == 200, body
    seen = json.loads(body)["headers"]
    assert seen["X-Forwarded-Proto"] == "https" and seen["X-Tenant-ID"] == "acme"
    assert https_get(port, ctx, "acme.t.example.com", host="ACME.t.example.com:443")[0] == 200
    before = len(eu.hits("/front"))
    status, headers, body = https_get(port, ctx, "acme.t.example.com", "/front", host="victim.t.example.com")
    assert status == 421 and json.loads(body)["kind"] == "misdirected"
    assert headers["connection"] == "close"
    assert len(eu.hits("/front")) == before
    assert router.metric("stamp_router_misdirected_requests_total") == 1


def test_plain_http_is_redirected_to_https(site):
    router, port, _ = site
    status, headers, _ = router.request("GET", "/a/b?c=1", headers={"Host": "acme.t.example.com:8080"})
    assert status == 308
    assert headers["location"] == f"https://acme.t.example.com:{port}/a/b?c=1"
    assert router.metric("stamp_router_http_redirects_total") == 1


def s_client(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "api.example.com",
                           *args], input=b"", capture_output=True, timeout=30)


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_are_refused(site, version):
    router, port, _ = site
    # SECLEVEL=0 so that the client itself would speak them: the refusal is the router's.
    out = s_client(port, version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert out.returncode != 0
    assert b"Cipher is (NONE)" in out.stdout or b"alert protocol version" in out.stderr, out
    assert router.metric("stamp_router_tls_handshake_failures_total", reason="protocol_version") >= 1


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"])
def test_weak_tls_1_2_ciphers_are_refused(site, cipher):
    _, port, _ = site
    out = s_client(port, "-tls1_2", "-cipher", f"{cipher}:@SECLEVEL=0")
    assert out.returncode != 0 and b"Cipher is (NONE)" in out.stdout, out


def test_tls_1_2_and_1_3_with_strong_suites_are_served(site):
    _, port, _ = site
    for args, want in ((["-tls1_2"], b"Cipher is ECDHE-ECDSA-"), (["-tls1_3"], b"Cipher is TLS_")):
        out = s_client(port, *args, "-alpn", "http/1.1")
        assert want in out.stdout and b"ALPN protocol: http/1.1" in out.stdout, out.stdout[-600:]


def test_plaintext_on_the_tls_port_is_closed_and_counted(site):
    router, port, _ = site
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        assert sock.recv(65536) == b""        # closed: no HTTP answer leaks from the TLS port
    wait_until(lambda: router.metric("stamp_router_tls_handshake_failures_total", reason="plaintext_http") == 1,
               10, message="plaintext counted")
    assert "Traceback" not in router.stderr()


def test_a_handshake_never_finished_is_timed_out_and_holds_a_connection_slot(site):
    router, port, _ = site
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        wait_until(lambda: router.metric("stamp_router_client_connections") == 1, 10, message="counted at accept")
        sock.sendall(b"\x16\x03\x01\x00\x50")          # half a ClientHello, then nothing
        assert sock.recv(100) == b""                   # timeouts.tls_handshake = 1s closes it
    wait_until(lambda: router.metric("stamp_router_tls_handshake_failures_total", reason="timeout") == 1,
               10, message="timeout counted")
    wait_until(lambda: router.metric("stamp_router_client_connections") == 0, 10, message="slot released")
    assert "Traceback" not in router.stderr()


def test_require_sni_refuses_unknown_names(pki, backends, router_proc):
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])], "routing": ROUTING},
                          [pki.issue("wild", "*.t.example.com")], require_sni=True)
    router = router_proc(doc, **where)
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    for name in ("nobody.example.org", None):
        with pytest.raises(ssl.SSLError):      # the alert, or the close after it
            peer_names(port, unverified, name)
    assert peer_names(port, pki.client_context(), "a.t.example.com") == ["*.t.example.com"]
    # Counted when the worker's handshake task sees the failure, which may be after the
    # client has read the alert.
    wait_until(lambda: router.metric("stamp_router_tls_handshake_failures_total", reason="unknown_sni") == 2,
               10, message="both refused handshakes counted")


def client_hello(name: str) -> bytes:
    """A complete ClientHello for `name`, from a client that will never say more."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    obj = ctx.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def read_to_close(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_client_that_never_finishes_its_handshake_holds_a_slot_until_timed_out(pki, backends, router_proc):
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])], "routing": ROUTING},
                                 [pki.issue("api", "api.example.com")], max_connections=1)
    doc["timeouts"] = {"tls_handshake": "1s"}
    router = router_proc(doc, **where)
    ctx = pki.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as stuck:
        # The whole ClientHello: the router answers it and then waits for a Finished
        # that never comes.
        stuck.sendall(client_hello("api.example.com"))
        wait_until(lambda: router.metric("stamp_router_client_connections") == 1, 10, message="counted at accept")
        # The one slot is taken: the next connection is closed at accept, unserved.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(port, ctx, "api.example.com")
        assert router.metric("stamp_router_connections_refused_total") >= 1
        assert read_to_close(stuck)[:1] == b"\x16"     # a handshake record, then closed
    wait_until(lambda: router.metric("stamp_router_tls_handshake_failures_total", reason="timeout") == 1,
               10, message="timeout counted")
    wait_until(lambda: router.metric("stamp_router_client_connections") == 0, 10, message="slot released")
    assert https_get(port, ctx, "api.example.com", headers={"X-Tenant-ID": "acme"})[0] == 200
    assert "Traceback" not in router.stderr()


def test_certs_endpoint_and_expiry_metric_show_each_pair(site):
    router, _, _ = site
    certs = router.admin_json("/certs")
    assert certs["https"] is True and certs["last_error"] is None
    got = {(tuple(c["names"]), c["key_type"]) for c in certs["certificates"]}
    assert got == {(("api.example.com",), "ECDSA"), (("*.t.example.com", "t.example.com"), "ECDSA"),
                   (("*.t.example.com", "t.example.com"), "RSA")}
    first = certs["certificates"][0]
    assert "PRIVATE KEY" not in json.dumps(certs)
    assert router.metric("stamp_router_tls_certificate_expiry_timestamp_seconds", cert_file=first["cert_file"],
                         names="api.example.com", key_type="ECDSA") == first["not_after"] > 0


def test_each_request_of_a_keep_alive_connection_is_checked_against_the_sni(site, pki):
    router, port, _ = site
    ctx = pki.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="acme.t.example.com") as tls:
        reader = tls.makefile("rb")
        for host, want in (("acme.t.example.com", b" 200 "), ("acme.t.example.com:443", b" 200 "),
                           ("victim.t.example.com", b" 421 ")):
            tls.sendall(b"GET /k HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
            status = reader.readline()
            assert want in status, (host, status)
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
    assert router.metric("stamp_router_misdirected_requests_total") == 1


def test_out_of_file_descriptors_the_listener_rests_and_then_accepts_again(site, pki):
    import os
    import resource
    router, port, _ = site
    worker = int(open(f"/proc/{router.proc.pid}/task/{router.proc.pid}/children").read().split()[0])
    in_use = len(os.listdir(f"/proc/{worker}/fd"))
    old = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (in_use + 2, old[1]))
    held = []
    try:
        for _ in range(6):                 # more than the worker can take: accept fails (EMFILE)
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_until(lambda: "https: accept failed" in router.stderr(), 10, message="the failure logged")
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, old)
        for sock in held:
            sock.close()
    # The listener was rested, not abandoned: new connections are served.
    assert https_get(port, pki.client_context(), "api.example.com", headers={"X-Tenant-ID": "acme"},
                     timeout=20)[0] == 200
    assert router.stderr().count("https: accept failed") == 1
    assert "Traceback" not in router.stderr()


def test_large_bodies_and_pipelined_requests_cross_a_tls_connection_intact(site, pki):
    """Reads of many records at once (an upload sent in one go, pipelined requests) and
    large responses, all through the buffer a TLS connection lends uvloop."""
    import hashlib
    _, port, _ = site
    ctx = pki.client_context()
    body = bytes(range(256)) * (12 * 1024)           # 3 MiB, more than one read's buffer
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            ctx.wrap_socket(raw, server_hostname="acme.t.example.com") as tls:
        reader = tls.makefile("rb")

        def response() -> tuple[bytes, bytes]:
            status = reader.readline()
            length = None
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert length is not None, status
            return status, reader.read(length)

        tls.sendall(b"POST /upload HTTP/1.1\r\nHost: acme.t.example.com\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body)
        status, got = response()
        assert b" 200 " in status, status
        got = json.loads(got)
        assert (got["bytes"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
        # Three requests in one write: one TLS record, answered in order.
        tls.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: acme.t.example.com\r\n\r\n" % i for i in range(3)))
        for i in range(3):
            status, got = response()
            assert b" 200 " in status and json.loads(got)["path"] == f"/p{i}", (status, got[:200])
        tls.sendall(b"GET /download?bytes=1048576 HTTP/1.1\r\nHost: acme.t.example.com\r\n\r\n")
        status, got = response()
        assert b" 200 " in status and got == (bytes(range(256)) * 256) * 16
