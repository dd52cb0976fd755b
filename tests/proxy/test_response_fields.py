"""router.proxy.response_fields: a response head's fields read from its bytes, and the
relay giving the same answer whichever parser read the head (in-process, both builds)."""

import pytest

from router.proxy.response_fields import EXACT, PASS, SPECIAL, read_head
from tests.proxy.inproc import DataPath, in_loop

NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 05:00:00 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
         b"Last-Modified: Thu, 26 Nov 2026 04:00:00 GMT\r\nETag: \"1\"\r\n\r\nok")


@pytest.mark.parametrize("head, expected", [
    # runs of the lines passed on, split where a line the relay handles was
    (NGINX, ([b"Server: nginx\r\nDate: Thu, 26 Nov 2026 05:00:00 GMT\r\nContent-Type: text/plain\r\n",
              b"Last-Modified: Thu, 26 Nov 2026 04:00:00 GMT\r\nETag: \"1\"\r\n"], b"2", False)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", ([], None, False)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ([], b"0", False)),
    (b"HTTP/1.0 200 OK\r\nCONTENT-LENGTH: \t5 \r\nConnection: Close\r\nVary: a\r\n\r\n",
     ([b"Vary: a\r\n"], b"5", True)),
    (b"HTTP/1.1 200 OK\r\nconnection: KEEP-ALIVE\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nA: b\r\n\r\n",
     ([b"A: b\r\n"], None, False)),
    # names that share a first letter and a length with one the relay handles pass
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTrailers-X: 1\r\nUpgrades: 2\r\nkeep-alivez: 3\r\n\r\n",
     ([b"Content-Encoding: gzip\r\nTrailers-X: 1\r\nUpgrades: 2\r\nkeep-alivez: 3\r\n"], None, False)),
    # spelled as the backend spelled it
    (b"HTTP/1.1 200 OK\r\nx-odd:no-space  \r\n\r\n", ([b"x-odd:no-space  \r\n"], None, False)),
    # left to the parser that reports each field
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", None),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nConnection: close, X-Private\r\nX-Private: 1\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\n\r\n", None),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", None),               # the head goes on
    (b"HTTP/1.1 200 OK\r\nContent-Le", None),
    (b"HTTP/1.1 200", None),
    (b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", None),        # an empty line first
])
def test_read_head(head, expected):
    assert read_head(head) == expected


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n", b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\nCo\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n:\r\n\r\n", b"HTTP/1.1 200 OK\r\r\r\r\r\r", b"HTTP/1.1 200 OK\r\n\r",
])
def test_what_the_parser_refuses_still_ends_the_reading(head):
    # Never used (the parser fed the same bytes refuses them): it only has to return.
    read_head(head)


def test_the_usual_spellings_table_agrees_with_the_lowercase_one():
    for name, kind in EXACT.items():
        assert kind == SPECIAL.get(name.lower(), PASS), name


GET = b"GET /p HTTP/1.1\r\nHost: a.example\r\nX-Tenant-ID: acme\r\n\r\n"


@pytest.mark.parametrize("response", [
    NGINX,
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nVary: a\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nServer: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n\r\nclose-delimited",
])
def test_a_head_in_one_read_is_relayed_as_a_head_over_two_reads(response):
    # One read: read_head takes the fields; split inside the head: the parser reporting
    # each field does. The client gets the same bytes and the connection the same fate.
    def answer(*reads: bytes) -> tuple[bytes, bool]:
        path = DataPath()
        path.request(GET)
        return path.respond(*reads), path.upstream.closed

    head_end = response.index(b"\r\n\r\n")
    assert in_loop(lambda: answer(response)) == in_loop(lambda: answer(response[:head_end - 3],
                                                                        response[head_end - 3:]))
