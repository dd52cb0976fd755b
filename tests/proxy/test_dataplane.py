"""The data path's exact bytes and bookkeeping, in-process (tests/proxy/inproc.py)."""

import pytest

from router.config import validate_document
from router.core.snapshot import build_snapshot
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
        rid = path.server._rid_prefix + b"1"
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
            assert sent == b"" and path.client.transport.take().startswith(b"HTTP/1.1 400 ")
            assert path.client.closed
            return
        assert sent.startswith(b"GET / HTTP/1.1\r\n")
        answer = path.respond(OK)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert (b"Connection: close\r\n" in answer) == (outcome == "close") == path.client.closed
        assert (b"Connection: keep-alive\r\n" in answer) == (outcome == "keep-alive (1.0)")
    in_loop(body)
