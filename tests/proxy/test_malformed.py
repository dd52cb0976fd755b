"""Malformed and ambiguous requests (docs/operations.md, what the router refuses): refused with 400/431 (501 for a
transfer coding the router cannot undo), the connection closed, and not one byte
forwarded to any upstream.

The upstream is a raw byte-counting sink: a request that got through in any form,
even one no HTTP framework would parse, would show up in its byte count.
"""

import json

import pytest

from tests.support.raw import raw_request, status_of
from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import SinkServer

HEAD = b"POST / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n"

CASES = {
    "content-length with transfer-encoding":
        (HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "two different content-lengths": (HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "two identical content-lengths": (HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    "bad chunk size": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    "chunk size overflow": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400),
    "negative content-length": (HEAD + b"Content-Length: -1\r\n\r\n", 400),
    "plus-signed content-length": (HEAD + b"Content-Length: +3\r\n\r\nabc", 400),
    "space before the colon": (b"GET / HTTP/1.1\r\nHost : a.example\r\nX-Tenant-ID: acme\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\nX-A: b\r\n c\r\n\r\n", 400),
    "NUL in a header value": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\nX-A: b\x00c\r\n\r\n", 400),
    "bare CR in a header value": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\nX-A: b\rc\r\n\r\n", 400),
    "garbage request line": (b"HELLO WORLD\r\n\r\n", 400),
    "unknown transfer-encoding": (HEAD + b"Transfer-Encoding: gzip\r\n\r\nabc", 501),
    "a transfer coding besides chunked": (HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    "HTTP/1.1 without Host": (b"GET / HTTP/1.1\r\nX-Tenant-ID: acme\r\n\r\n", 400),
    "transfer-encoding chunked twice": (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "bare LF line endings": (b"GET / HTTP/1.1\nHost: a.example\nX-Tenant-ID: acme\n\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nX-Tenant-ID: acme\r\n\r\n", 400),
    "two tenant headers": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\nX-Tenant-ID: evil\r\n\r\n", 400),
    "two Authorization headers": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n"
                                  b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n", 400),
    "HTTP/2.0 in an HTTP/1 request line": (b"GET / HTTP/2.0\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n\r\n", 400),
    "over-long header block": (b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n"
                               + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(8)) + b"\r\n", 431),
    "over-long request line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a.example\r\n\r\n", 431),
}


@pytest.fixture(scope="module")
def module_sink(bg):
    s = bg.run(SinkServer().start())
    yield s
    bg.run(s.stop())


@pytest.fixture(scope="module")
def module_router(module_sink, tmp_path_factory):
    # One router for the whole module: each case opens its own connection.
    proc = RouterProcess(tmp_path_factory.mktemp("malformed"), {
        "routing": {"sources": ["header"], "unpinned": "hash"},
        "limits": {"max_header_bytes": 4096},
        "stamps": [stamp("eu-1", [module_sink.address])],
    }).start()
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def sink(module_sink):
    module_sink.received.clear()
    module_sink.connections = 0
    return module_sink


@pytest.fixture
def router(module_router, sink):
    return module_router


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_request_is_refused_and_nothing_is_forwarded(name, router, sink):
    data, expected = CASES[name]
    response, closed = raw_request(router.port, data)
    assert status_of(response) == expected, response
    assert b"Connection: close" in response
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["request_id"] and body["error"]
    assert closed, "the router must close the connection after a malformed request"
    assert sink.received == b"", f"bytes reached the upstream: {bytes(sink.received)[:200]!r}"
    assert sink.connections == 0


def test_well_formed_request_does_reach_the_sink(router, sink):
    """The control case: the same setup forwards a valid request, so the sink does see bytes."""
    response, _ = raw_request(router.port, b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n"
                                           b"Connection: close\r\n\r\n")
    assert status_of(response) == 200
    assert b"X-Tenant-ID: acme" in bytes(sink.received)


def requests_counted(router) -> float:
    _, _, data = router.admin("GET", "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in data.decode().splitlines()
               if line.startswith("stamp_router_requests_total{"))


def test_a_malformed_body_is_counted_once_under_its_request_id(router, sink):
    before = requests_counted(router)
    response, closed = raw_request(router.port, HEAD + b"X-Request-ID: body-bad-1\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    assert status_of(response) == 400 and closed
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["request_id"] == "body-bad-1"
    assert requests_counted(router) == before + 1

