# cython: annotation_typing=False
"""How a response's body is delimited (RFC 9112 section 6.3), and how it is relayed.

The router relays a body as it arrives and never buffers one whole, so what the backend
used to delimit its body decides how the client will see it delimited:

    RFC 9112 6.3    backend's response                     to an HTTP/1.1 client    to an HTTP/1.0 client
    ------------    -----------------------------------    ---------------------    -------------------------
    rule 1          answer to HEAD, 1xx, 204, 304          no body                  no body
    (101)           Switching Protocols                    no body: a tunnel        no body: a tunnel
    rule 4          Transfer-Encoding ending in chunked    chunked                  raw bytes, then close
    rule 6          Content-Length                         Content-Length           Content-Length
    rule 8          neither: the body ends at its close    chunked                  raw bytes, then close

HTTP/1.0 has no chunked coding, so a body of unknown length can only end with the
connection. Interim (1xx) responses other than 101 are relayed before the final one and
never get here.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Relay(IntEnum):
    NONE = 0          # no body
    LENGTH = 1        # the backend's Content-Length; bytes as they come
    CHUNKED = 2       # chunked to the client
    RAW_CLOSE = 3     # bytes as they come; closing the connection ends the body


class Framing(NamedTuple):
    relay: Relay
    until_close: bool     # the backend's body ends when it closes its connection (rule 8)
    close: bool           # the client connection closes after this response


_NO_BODY = Framing(Relay.NONE, False, False)
_LENGTH = Framing(Relay.LENGTH, False, False)
# [http10]
_CHUNKED = (Framing(Relay.CHUNKED, False, False), Framing(Relay.RAW_CLOSE, False, True))
_UNTIL_CLOSE = (Framing(Relay.CHUNKED, True, False), Framing(Relay.RAW_CLOSE, True, True))


def response_framing(status: int, head_request: bool, chunked: bool, has_length: bool, http10: bool) -> Framing:
    """The framing of a final response (status >= 200, or 101)."""
    if status == 101 or head_request or status == 204 or status == 304:
        return _NO_BODY
    if chunked:
        return _CHUNKED[http10]
    if has_length:
        return _LENGTH
    return _UNTIL_CLOSE[http10]


def ends_at_head(status: int, head_request: bool, length: bytes | None) -> bool:
    """Whether the message ends with its head although the parser expects a body.

    The response parser is not told that the request was HEAD: given a Content-Length
    (other than 0) or no length at all, it would wait for a body that never comes.
    """
    return head_request and length != b"0" and status != 204 and status != 304
