"""router.proxy.head: the heads the router writes, byte for byte."""

import pytest

from router.proxy.framing import Relay
from router.proxy.head import forwarded_fields, request_head, response_connection, response_head, without_named

USUAL = b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"


def parts(*lines: bytes) -> list[bytes]:
    """Field lines as the proxy collects them: name, b": ", value, CRLF each."""
    out = []
    for line in lines:
        name, value = line[:-2].split(b": ", 1)
        out += [name, b": ", value, b"\r\n"]
    return out


@pytest.mark.parametrize("xff, proto, scheme, expected", [
    (None, None, b"http", USUAL),
    (b"198.51.100.2", None, b"http",
     b"X-Forwarded-For: 198.51.100.2, 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"),
    (b"198.51.100.2", b"https", b"http",
     b"X-Forwarded-For: 198.51.100.2, 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"),
    (None, b"https", b"http", b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"),
])
def test_forwarded_fields(xff, proto, scheme, expected):
    assert forwarded_fields(xff, b"10.0.0.1", proto, scheme, USUAL) == expected


FIELDS = [b"Host: a.test\r\n", b"Accept: */*\r\n"]


@pytest.mark.parametrize("kwargs, expected", [
    ({}, b"GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nX-Tenant-ID: acme\r\n" + USUAL
     + b"X-Forwarded-Host: a.test\r\nX-Request-ID: r1\r\n\r\n"),
    # HTTP/1.0 without Host: the backend's address stands in; no X-Forwarded-Host
    ({"host": None, "fields": [b"Accept: */*\r\n"]},
     b"GET /x HTTP/1.1\r\nAccept: */*\r\nHost: 127.0.0.1:9\r\nX-Tenant-ID: acme\r\n" + USUAL
     + b"X-Request-ID: r1\r\n\r\n"),
    ({"tenant_line": None, "chunked": True},
     b"GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n" + USUAL
     + b"X-Forwarded-Host: a.test\r\nX-Request-ID: r1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ({"tenant_line": None, "content_length": 5},
     b"GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n" + USUAL
     + b"X-Forwarded-Host: a.test\r\nX-Request-ID: r1\r\nContent-Length: 5\r\n\r\n"),
    ({"tenant_line": None, "upgrade": b"websocket"},
     b"GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n" + USUAL
     + b"X-Forwarded-Host: a.test\r\nX-Request-ID: r1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
])
def test_request_head(kwargs, expected):
    args = {"method": b"GET", "url": b"/x", "fields": list(FIELDS), "host": b"a.test",
            "default_host": "127.0.0.1:9", "tenant_line": b"X-Tenant-ID: acme\r\n", "forwarded": USUAL,
            "request_id": b"r1", "chunked": False, "content_length": None, "upgrade": None, **kwargs}
    fields = list(args["fields"])
    assert request_head(**args) == expected
    assert args["fields"] == fields          # the collected lines are left as they were


@pytest.mark.parametrize("connection, expected", [
    (b"close", parts(*FIELDS, b"X-Debug: 1\r\n")),
    (b"X-Debug", parts(*FIELDS)),
    (b"keep-alive, x-debug , Accept", parts(b"Host: a.test\r\n")),
])
def test_fields_named_by_connection_are_dropped(connection, expected):
    assert without_named(parts(*FIELDS, b"X-Debug: 1\r\n"), connection) == expected


@pytest.mark.parametrize("status, connection, upgrade, fields, close", [
    (200, b"close", None, parts(b"Server: x\r\n", b"X-Debug: 1\r\n"), True),
    (200, b"X-Debug", None, parts(b"Server: x\r\n"), False),
    (200, b"x-debug, Server", None, [], False),
    (101, b"Upgrade", b"websocket",
     parts(b"Server: x\r\n", b"X-Debug: 1\r\n", b"Connection: Upgrade\r\n", b"Upgrade: websocket\r\n"), False),
])
def test_response_connection(status, connection, upgrade, fields, close):
    given = parts(b"Server: x\r\n", b"X-Debug: 1\r\n")
    assert response_connection(given, connection, upgrade, status) == (fields, close)
    assert given == parts(b"Server: x\r\n", b"X-Debug: 1\r\n")


@pytest.mark.parametrize("args, expected", [
    ((200, [b"Server: x\r\n"], b"2", Relay.LENGTH, None, None, False, False),
     b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\n"),
    # a Content-Length is dropped when the body is re-chunked or ends with the close
    ((200, None, b"2", Relay.CHUNKED, None, None, False, False),
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ((200, None, None, Relay.RAW_CLOSE, None, None, True, True),
     b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
    # HEAD's Content-Length stays; HTTP/1.0 is told keep-alive
    ((200, None, b"9", Relay.NONE, None, None, False, True),
     b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: keep-alive\r\n\r\n"),
    ((502, None, b"0", Relay.LENGTH, b"X-Stamp: eu-1\r\n", b"X-Stamp-Failover: eu-2\r\n", True, False),
     b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nX-Stamp: eu-1\r\nX-Stamp-Failover: eu-2\r\n"
     b"Connection: close\r\n\r\n"),
    # 101 never says close or keep-alive: its Connection is the switch itself
    ((101, [b"Connection: Upgrade\r\n"], None, Relay.NONE, None, None, True, False),
     b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"),
    ((299, None, b"0", Relay.LENGTH, None, None, False, False),
     b"HTTP/1.1 299 Unknown\r\nContent-Length: 0\r\n\r\n"),
])
def test_response_head(args, expected):
    assert response_head(*args) == expected
