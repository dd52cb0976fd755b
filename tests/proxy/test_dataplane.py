"""The data path's exact bytes and bookkeeping, in-process (tests/proxy/inproc.py)."""

import pytest

from router.config import validate_document
from router.core.snapshot import build_snapshot
from router.proxy.downstream import ClientConnection
from router.proxy.settings import H_PASS, settings_for
from tests.proxy.inproc import DataPath, doc, in_loop

GET = b"GET /p?q=1 HTTP/1.1\r\nHost: a.example\r\nUser-Agent: t\r\nX-Tenant-ID: acme\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


@pytest.mark.parametrize("routing", [{}, {"tenant_header": "X-Customer"}, {"tenant_header": "user-agent"}])
def test_the_usual_spellings_table_agrees_with_the_lowercase_one(routing):
    snap = build_snapshot(validate_document({**doc(**routing), "geo": {"header": "CF-IPCountry"}},
                                            source="t"), loaded_at=0.0)
    settings = settings_for(snap)
    assert settings.spelled
    for name, kind in settings.spelled.items():
        assert kind == settings.interest.get(name.lower(), H_PASS), name


@pytest.mark.parametrize("spelling", [
    (b"Host", b"X-Tenant-ID", b"Connection", b"X-Forwarded-Proto"),
    (b"host", b"x-tenant-id", b"connection", b"x-forwarded-proto"),
    (b"HOST", b"X-TENANT-ID", b"CONNECTION", b"X-FORWARDED-PROTO"),
])
def test_request_head_sent_upstream(spelling):
    host, tenant, connection, proto = spelling

    def body():
        path = DataPath()
        sent = path.request(b"GET /p?q=1 HTTP/1.1\r\n%s: a.example\r\nUser-Agent: t\r\n%s: acme\r\n"
                            b"%s: keep-alive\r\n%s: https\r\nAccept: */*\r\nKeep-Alive: 5\r\n\r\n"
                            % (host, tenant, connection, proto))
        rid = path.server._rid_prefix.encode() + b"1"
        assert sent == (b"GET /p?q=1 HTTP/1.1\r\n%s: a.example\r\nUser-Agent: t\r\nAccept: */*\r\n"
                        b"X-Tenant-ID: acme\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                        b"X-Forwarded-Host: a.example\r\nX-Request-ID: %s\r\n\r\n" % (host, rid))
        assert path.respond(OK) == (b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n"
                                    b"X-Stamp: eu-1\r\n\r\nok")
    in_loop(body)


def test_request_head_with_its_own_forwarded_for_and_no_host():
    def body():
        path = DataPath()
        sent = path.request(b"GET / HTTP/1.0\r\nX-Forwarded-For: 203.0.113.9\r\nX-Tenant-ID: acme\r\n"
                            b"X-Request-ID: r-1\r\n\r\n")
        assert sent == (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Tenant-ID: acme\r\n"
                        b"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
                        b"X-Request-ID: r-1\r\n\r\n")
    in_loop(body)


def forwarded_lines(config: dict, request: bytes) -> list[bytes]:
    """The X-Forwarded-For/-Proto lines sent upstream for `request` from 127.0.0.1."""
    out = []

    def body():
        sent = DataPath(config).request(request)
        out.extend(ln for ln in sent.split(b"\r\n") if ln.startswith((b"X-Forwarded-For", b"X-Forwarded-Proto")))
    in_loop(body)
    return out


HTTPS = b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant-ID: acme\r\nX-Forwarded-Proto: %s\r\n%s\r\n"


@pytest.mark.parametrize("listen, sent, forwarded_for, proto", [
    # nobody trusted: the client's word is replaced by the configured scheme
    ({}, b"https", b"", b"http"),
    ({"forwarded_proto": "https"}, b"http", b"", b"https"),
    # a trusted peer's scheme is kept, in any case, the first of a list, with or without XFF
    ({"trusted_proxies": ["127.0.0.0/8"]}, b"HTTPS", b"", b"https"),
    ({"trusted_proxies": ["127.0.0.1"], "forwarded_proto": "https"}, b"http", b"", b"http"),
    ({"trusted_proxies": ["10.0.0.0/8", "127.0.0.1/32"]}, b"https, http", b"X-Forwarded-For: 198.51.100.2\r\n",
     b"https"),
    # a trusted peer's word that is not a scheme is replaced
    ({"trusted_proxies": ["127.0.0.1"], "forwarded_proto": "https"}, b"gopher", b"", b"https"),
    # a peer outside the trusted networks is not trusted
    ({"trusted_proxies": ["10.0.0.0/8", "::1"]}, b"https", b"", b"http"),
])
def test_x_forwarded_proto_comes_from_the_config_or_a_trusted_proxy(listen, sent, forwarded_for, proto):
    lines = forwarded_lines({**doc(), "listen": listen}, HTTPS % (sent, forwarded_for))
    expected_for = b"X-Forwarded-For: 198.51.100.2, 127.0.0.1" if forwarded_for else b"X-Forwarded-For: 127.0.0.1"
    assert lines == [expected_for, b"X-Forwarded-Proto: " + proto]


class BrokenConnection(ClientConnection):
    """A client connection with a bug in a parser callback."""

    def on_url(self, url: bytes) -> None:
        raise KeyError("a bug")


def test_a_fault_of_the_router_while_reading_a_request_is_500_and_logged_not_a_400(caplog):
    def body():
        path = DataPath(connection=BrokenConnection)
        assert path.request(GET) == b""                      # nothing went upstream
        answer = path.sent_to_client()
        assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
        assert b'"kind":"internal"' in answer and b"Connection: close" in answer
        assert path.client.closed
    in_loop(body)
    record = next(r for r in caplog.records if r.name == "router.proxy")
    assert record.levelname == "ERROR" and isinstance(record.exc_info[1], KeyError)


def test_the_upstream_deadline_moves_on_once_per_read_that_brought_head_or_body():
    def body():
        path = DataPath()
        path.request(GET)
        ex = path.client.queue[0]
        first = ex.up_deadline
        ex.up_deadline = 0.0
        path.respond(b"HTTP/1.1 200 OK\r\nContent-Le")        # part of the head: no progress
        assert ex.up_deadline == 0.0
        path.respond(b"ngth: 4\r\n\r\n")                        # the head
        assert ex.up_deadline >= first
        ex.up_deadline = 0.0
        path.respond(b"ok")                                     # body
        assert ex.up_deadline >= first
        assert path.respond(b"ok") == b"ok" and ex.finished and ex.up_deadline == float("inf")
    in_loop(body)


@pytest.mark.parametrize("version, connection, outcome", [
    (b"1.1", b"", "keep-alive"),
    (b"1.1", b"Connection: close\r\n", "close"),
    (b"1.0", b"", "close"),
    (b"1.0", b"Connection: keep-alive\r\n", "keep-alive (1.0)"),
    (b"0.9", b"", 400),
    (b"2.0", b"", 400),
    (b"2.0", b"Connection: keep-alive\r\n", 400),
])
def test_http_version_and_keep_alive(version, connection, outcome):
    def body():
        path = DataPath()
        sent = path.request(b"GET / HTTP/%s\r\nHost: a\r\nX-Tenant-ID: acme\r\n%s\r\n" % (version, connection))
        if outcome == 400:
            assert sent == b"" and path.sent_to_client().startswith(b"HTTP/1.1 400 ")
            assert path.client.closed
            return
        assert sent.startswith(b"GET / HTTP/1.1\r\n")
        answer = path.respond(OK)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert (b"Connection: close\r\n" in answer) == (outcome == "close") == path.client.closed
        assert (b"Connection: keep-alive\r\n" in answer) == (outcome == "keep-alive (1.0)")
    in_loop(body)
