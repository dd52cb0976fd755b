"""router.proxy.framing: RFC 9112 6.3, rule by rule, for both kinds of client."""

import pytest

from router.proxy.framing import Framing, Relay, ends_at_head, response_framing

N, L, C, R = Relay.NONE, Relay.LENGTH, Relay.CHUNKED, Relay.RAW_CLOSE


@pytest.mark.parametrize("status, head, chunked, length, http10, expected", [
    # rule 1: no body after HEAD, 204, 304, whatever the fields say; 101 is a tunnel
    (200, True, False, True, False, Framing(N, False, False)),
    (200, True, True, False, True, Framing(N, False, False)),
    (204, False, False, True, False, Framing(N, False, False)),
    (304, False, True, False, False, Framing(N, False, False)),
    (101, False, False, False, False, Framing(N, False, False)),
    # rule 4: chunked stays chunked; HTTP/1.0 gets the bytes and a close
    (200, False, True, False, False, Framing(C, False, False)),
    (200, False, True, False, True, Framing(R, False, True)),
    # chunked wins over a Content-Length sent with it (RFC 9112 6.3 rule 3)
    (200, False, True, True, False, Framing(C, False, False)),
    # rule 6: Content-Length as it is, for either version
    (200, False, False, True, False, Framing(L, False, False)),
    (404, False, False, True, True, Framing(L, False, False)),
    # rule 8: until the backend closes; chunked to HTTP/1.1, raw and close to HTTP/1.0
    (200, False, False, False, False, Framing(C, True, False)),
    (500, False, False, False, True, Framing(R, True, True)),
])
def test_response_framing(status, head, chunked, length, http10, expected):
    assert response_framing(status, head, chunked, length, http10) == expected


@pytest.mark.parametrize("status, head, length, expected", [
    (200, True, b"12", True),      # the parser would wait for 12 bytes that never come
    (200, True, None, True),       # ... or for the close
    (200, True, b"0", False),      # the parser ends it by itself
    (204, True, None, False),
    (304, True, b"5", False),
    (200, False, b"12", False),    # not HEAD: the body follows
])
def test_a_head_response_ends_at_its_head(status, head, length, expected):
    assert ends_at_head(status, head, length) is expected
