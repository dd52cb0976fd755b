"""What the router changes on the way through (docs/operations.md) and what it keeps."""

import json
import socket

import pytest

from tests.support.raw import raw_request, read_responses, status_of
from tests.control.support import write_by_rename, write_doc
from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import Backend, start_backend, stop_backend, wait_until


@pytest.fixture(scope="module")
def stamps(bg):
    eu1 = bg.run(start_backend(Backend("eu-1")))
    eu2 = bg.run(start_backend(Backend("eu-2")))
    yield eu1, eu2
    bg.run(stop_backend(eu1))
    bg.run(stop_backend(eu2))


@pytest.fixture(scope="module")
def router(stamps, tmp_path_factory):
    eu1, eu2 = stamps
    proc = RouterProcess(tmp_path_factory.mktemp("fwd"), {
        "routing": {"sources": ["subdomain", "header"], "domains": ["stamps.test"], "unpinned": "hash"},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-1", "globex": "eu-2"},
    }).start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture(autouse=True)
def clean(stamps):
    for b in stamps:
        b.requests.clear()


def backend_saw(backend):
    hits = backend.hits()
    assert len(hits) == 1, hits
    return hits[0]["headers"]


def test_tenant_header_is_the_resolved_tenant_not_the_clients(router, stamps):
    eu1, eu2 = stamps
    # The subdomain source comes first; the client's own X-Tenant-ID must not survive.
    status, headers, body = router.request("GET", "/", headers={"Host": "acme.stamps.test", "X-Tenant-ID": "globex"})
    assert status == 200 and headers["x-stamp"] == "eu-1"
    assert backend_saw(eu1)["X-Tenant-ID"] == "acme"
    assert eu2.hits() == []


def test_forwarded_headers_are_set(router, stamps):
    eu1, _ = stamps
    router.request("GET", "/p?q=1", headers={"Host": "acme.stamps.test:8080", "X-Forwarded-For": "203.0.113.7",
                                             "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"})
    seen = backend_saw(eu1)
    assert seen["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == "acme.stamps.test:8080"
    assert seen["Host"] == "acme.stamps.test:8080", "Host is passed through unchanged"
    assert eu1.hits()[0]["path"] == "/p?q=1"


def test_request_id_is_kept_when_well_formed(router, stamps):
    eu1, _ = stamps
    router.request("GET", "/", headers={"X-Tenant-ID": "acme", "X-Request-ID": "abc-123"})
    assert backend_saw(eu1)["X-Request-ID"] == "abc-123"


def test_request_id_is_replaced_when_malformed_or_missing(router, stamps):
    eu1, _ = stamps
    router.request("GET", "/", headers={"X-Tenant-ID": "acme", "X-Request-ID": "bad id with spaces"})
    router.request("GET", "/", headers={"X-Tenant-ID": "acme"})
    ids = [h["headers"]["X-Request-ID"] for h in eu1.hits()]
    assert len(ids) == 2 and ids[0] != "bad id with spaces" and ids[0] != ids[1]
    assert all(i and " " not in i for i in ids)


def test_hop_by_hop_and_connection_named_headers_are_removed(router, stamps):
    eu1, _ = stamps
    router.request("GET", "/", headers={"X-Tenant-ID": "acme", "Connection": "keep-alive, X-Secret-Hop",
                                        "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
                                        "Proxy-Authorization": "Basic x", "X-Kept": "yes"})
    seen = backend_saw(eu1)
    for name in ("X-Secret-Hop", "Keep-Alive", "TE", "Proxy-Authorization"):
        assert name not in seen, name
    assert seen["X-Kept"] == "yes"


def test_stamp_header_on_the_response(router):
    status, headers, _ = router.request("GET", "/", headers={"X-Tenant-ID": "globex"})
    assert status == 200 and headers["x-stamp"] == "eu-2"


def test_head_response_has_no_body_and_connection_stays_usable(router):
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n"
                     b"GET /y HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
        buf = b""
        while buf.count(b"\r\n\r\n") < 2 or not buf.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    head1, rest = buf.split(b"\r\n\r\n", 1)
    assert head1.startswith(b"HTTP/1.1 200") and b"Content-Length:" in head1
    assert rest.startswith(b"HTTP/1.1 200"), "the HEAD response must not carry a body"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["path"] == "/y"


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_statuses(router, code):
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"GET /status/%d HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n" % code
                     + b"GET /after HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
        buf = b""
        while b'"/after"' not in buf:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    first, rest = buf.split(b"\r\n\r\n", 1)
    assert status_of(first) == code
    assert b"Transfer-Encoding" not in first
    assert rest.startswith(b"HTTP/1.1 200")


def test_expect_100_continue(router, stamps):
    eu1, _ = stamps
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(b"hello")
        final = read_responses(sock, 1)[0]
    assert status_of(final) == 200
    assert json.loads(final.split(b"\r\n\r\n", 1)[1])["bytes"] == 5


def test_pipelined_requests_are_answered_in_order(router):
    paths = [f"/p{i}" for i in range(8)]
    data = b"".join(b"GET %s HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: %s\r\n\r\n"
                    % (p.encode(), b"acme" if i % 2 else b"globex") for i, p in enumerate(paths))
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(data)
        responses = read_responses(sock, len(paths))
    got = [json.loads(r.split(b"\r\n\r\n", 1)[1])["path"] for r in responses]
    assert got == paths


def test_keep_alive_client_connection_is_reused(router, stamps):
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        for i in range(3):
            sock.sendall(b"GET /k%d HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n" % i)
            assert status_of(read_responses(sock, 1)[0]) == 200


def test_upstream_connections_are_pooled(router, stamps):
    eu1, _ = stamps
    for _ in range(5):
        router.request("GET", "/pool", headers={"X-Tenant-ID": "acme"})
    peers = {tuple(h["peer"]) for h in eu1.hits()}
    assert len(eu1.hits()) == 5
    assert len(peers) == 1, f"sequential requests should reuse one upstream connection, saw {peers}"


def test_chunked_request_body_with_trailers(router):
    body = b"4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n"
    response, _ = raw_request(router.port, b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n"
                                           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
    assert status_of(response) == 200
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["bytes"] == 9


def test_chunked_response_is_relayed(router):
    response, _ = raw_request(router.port, b"GET /download?bytes=100000&chunked=1 HTTP/1.1\r\nHost: a\r\n"
                                           b"X-Tenant-ID: acme\r\nConnection: close\r\n\r\n")
    head, body = response.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    decoded, rest = b"", body
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            break
        decoded += rest[:size]
        rest = rest[size + 2:]
    assert len(decoded) == 100000


def test_http10_client_gets_a_close_delimited_or_length_response(router):
    response, closed = raw_request(router.port, b"GET /old HTTP/1.0\r\nHost: a\r\nX-Tenant-ID: acme\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200")
    assert closed
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["path"] == "/old"


@pytest.mark.parametrize("headers,status", [
    ({"X-Tenant-ID": "bad tenant!"}, 400),
    ({"Host": "bad_label!.stamps.test"}, 400),
    ({}, 404),
])
def test_refusals_carry_json_with_request_id(router, headers, status):
    got, resp_headers, body = router.request("GET", "/", headers=headers)
    assert got == status
    doc = json.loads(body)
    assert doc["request_id"] == resp_headers["x-request-id"]
    assert doc["error"]


def test_x_forwarded_proto_follows_a_reload_on_an_open_connection(backends, router_proc):
    """listen.forwarded_proto and listen.trusted_proxies apply on reload, to connections
    already open too: a client of a keep-alive connection must not keep an old trust."""
    (eu1,) = backends("eu-1")
    router = router_proc({"routing": {"sources": ["header"]}, "control": {"watch_interval": 0.1},
                          "stamps": [stamp("eu-1", [eu1.address])], "tenants": {"acme": "eu-1"}})

    def reload(n: int, **listen):
        write_doc(router, write_by_rename, {"listen": {**router.doc["listen"], **listen}})
        wait_until(lambda: router.metric("stamp_router_config_reloads_total", source="file", result="success") == n,
                   message=f"reload {n}")

    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        def proto_seen(claimed: bytes = b"") -> str:
            line = b"X-Forwarded-Proto: %s\r\n" % claimed if claimed else b""
            sock.sendall(b"GET /p HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\n%s\r\n" % line)
            assert status_of(read_responses(sock, 1)[0]) == 200
            return eu1.hits("/p")[-1]["headers"]["X-Forwarded-Proto"]

        assert proto_seen(b"https") == "http"           # a client's claim is replaced
        reload(1, forwarded_proto="https")               # TLS ends in front of every router
        assert proto_seen() == "https" and proto_seen(b"http") == "https"
        reload(2, trusted_proxies=["127.0.0.1"])         # this peer is now the proxy in front
        assert proto_seen(b"http") == "http" and proto_seen(b"https") == "https"
        assert proto_seen() == "http"                    # no claim: forwarded_proto, "http" again


def test_behind_a_trusted_proxy_geo_and_the_access_log_see_the_forwarded_client(backends, router_proc):
    """Anonymous traffic keeps a stamp per client address. Behind a load balancer every
    connection comes from the balancer: trusting it spreads clients again."""
    eu1, eu2 = backends("eu-1", "eu-2")
    router = router_proc({
        "listen": {"trusted_proxies": ["127.0.0.0/8"]},
        "routing": {"sources": ["header"], "anonymous": "geo"}, "admin": {"access_log": True},
        "geo": {"default_region": "eu", "regions": {"eu": ["DE"]}}, "control": {"watch_interval": 0.1},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])]})
    clients = [f"198.51.100.{i}" for i in range(1, 41)]

    def stamps_by_client(path: str) -> dict[str, str]:
        return {c: router.request("GET", path, headers={"CF-IPCountry": "DE", "X-Forwarded-For": f"203.0.113.9, {c}"}
                                  )[1]["x-stamp"] for c in clients}

    placed = stamps_by_client("/trusted")
    assert set(placed.values()) == {"eu-1", "eu-2"}
    assert stamps_by_client("/trusted-again") == placed           # and each client keeps its stamp

    def logged() -> dict[str, str]:
        lines = [json.loads(ln) for ln in router.stdout().splitlines() if ln.startswith("{")]
        return {ln["client"]: ln["stamp"] for ln in lines if ln["path"] == "/trusted"}
    wait_until(lambda: len(logged()) == len(clients), message="the access log of the first round")
    assert logged() == placed

    write_doc(router, write_by_rename, {"listen": {"http": router.doc["listen"]["http"]}})
    wait_until(lambda: router.metric("stamp_router_config_reloads_total", source="file", result="success") == 1,
               message="the reload that trusts nobody")
    assert len(set(stamps_by_client("/untrusted").values())) == 1  # every client is the balancer now


def test_behind_a_proxy_protocol_balancer_the_header_names_the_client(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"listen": {"proxy_protocol": True}, "routing": {"sources": ["header"]},
                          "admin": {"access_log": True}, "stamps": [stamp("eu-1", [eu1.address])]})
    get = b"GET /pp HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\nX-Forwarded-For: 203.0.113.66\r\n\r\n"

    def forwarded_for(*parts: bytes) -> str:
        """Send `parts` on one connection, one write each; what the backend was told."""
        with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
            for part in parts:
                sock.sendall(part)
            assert status_of(read_responses(sock, 1)[0]) == 200
        seen = eu1.hits("/pp")[-1]["headers"]
        return f'{seen["X-Forwarded-For"]} {seen["X-Forwarded-Proto"]}'

    v1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 8080\r\n"
    assert forwarded_for(v1 + get) == "203.0.113.66, 198.51.100.7 http"
    assert forwarded_for(v1[:9], v1[9:] + get[:5], get[5:]) == "203.0.113.66, 198.51.100.7 http"   # split anywhere
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    v2_local = signature + b"\x20\x00\x00\x00"                          # the balancer's own health check
    assert forwarded_for(v2_local + get) == "203.0.113.66, 127.0.0.1 http"
    # v2 from a balancer that ended TLS (HAProxy send-proxy-v2-ssl): addresses, ports, PP2_TYPE_SSL.
    v2_tls = signature + b"\x21\x11\x00\x14" + bytes([198, 51, 100, 8, 10, 0, 0, 1]) + b"\xc8\x22\x1f\x90" + \
        b"\x20\x00\x05\x01\x00\x00\x00\x00"
    assert forwarded_for(v2_tls + get) == "203.0.113.66, 198.51.100.8 https"
    assert forwarded_for(v2_tls + get.replace(b"X-Forwarded-For: 203.0.113.66\r\n", b"")) == "198.51.100.8 https"

    # Without a header, nothing is answered or forwarded, and the refusal is counted.
    hits = len(eu1.hits("/pp"))
    response, closed = raw_request(router.port, get)
    assert (response, closed) == (b"", True)
    assert len(eu1.hits("/pp")) == hits
    assert router.metric("stamp_router_proxy_protocol_errors_total") == 1

    def logged_clients() -> list[str]:
        return [json.loads(ln)["client"] for ln in router.stdout().splitlines() if ln.startswith("{")]
    wait_until(lambda: len(logged_clients()) == 5, message="five access log lines")
    assert logged_clients() == ["198.51.100.7", "198.51.100.7", "127.0.0.1", "198.51.100.8", "198.51.100.8"]
