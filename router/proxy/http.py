"""HTTP/1.1 constants and the small byte builders the data path shares."""

from __future__ import annotations

import re
from http import HTTPStatus

import orjson

from router.errors import STATUS, ErrorKind

# RFC 9110 7.6.1: connection-specific fields a proxy must not forward, plus the
# de-facto ones (Keep-Alive, Proxy-Connection) that HAProxy and nginx strip too.
HOP_BY_HOP = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
))

# X-Request-ID from a client is kept only when it cannot smuggle anything into logs.
REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# RFC 9110's names where Python's table still has the older ones.
REASONS.update({413: b"Content Too Large", 414: b"URI Too Long", 416: b"Range Not Satisfiable",
                422: b"Unprocessable Content"})

CRLF = b"\r\n"


STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def error_response(kind: ErrorKind, message: str, request_id: bytes, *, close: bool,
                   extra_headers: tuple[tuple[bytes, bytes], ...] = (), head_only: bool = False) -> bytes:
    """A complete error answer: small JSON body naming the error and the request id."""
    status = STATUS[kind]
    body = orjson.dumps({"error": message or kind.value, "kind": kind.value,
                         "request_id": request_id.decode("latin-1")})
    parts = [status_line(status), b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
             b"X-Request-ID: " + request_id + CRLF]
    for name, value in extra_headers:
        parts.append(name + b": " + value + CRLF)
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(CRLF)
    if not head_only:
        parts.append(body)
    return b"".join(parts)


# Connection options that are not field names (RFC 9112 9.6, 9110 7.8).
CONNECTION_OPTIONS = frozenset((b"close", b"keep-alive", b"upgrade"))

_COMMON_TOKENS = {b"keep-alive": frozenset((b"keep-alive",)), b"close": frozenset((b"close",))}


def connection_tokens(value: bytes) -> frozenset[bytes]:
    common = _COMMON_TOKENS.get(value.lower())
    if common is not None:
        return common
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
