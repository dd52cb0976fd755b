# cython: annotation_typing=False
"""The heads the router writes: the request it sends upstream and the response head it
sends back. Pure functions over bytes: what goes in is what the parser collected and what
the decision said; nothing is read from a connection or a clock.

The common lines are joins rather than %-formatting or `+`: bytes formatting and each
concatenation (the buffer protocol on both operands, an allocation) cost more.
"""

from __future__ import annotations

from router.proxy.framing import Relay
from router.proxy.http import CONNECTION_OPTIONS, CRLF, STATUS_LINES, connection_tokens, status_line

_CHUNKED = Relay.CHUNKED
_RAW_CLOSE = Relay.RAW_CLOSE


def _drop_named(fields: list[bytes], named: set[bytes]) -> list[bytes]:
    """Fields held as four parts each (name, b": ", value, CRLF), minus those whose name
    is in `named` (lowercase): a new list."""
    kept: list[bytes] = []
    for i in range(0, len(fields), 4):
        if fields[i].lower() not in named:
            kept += fields[i:i + 4]
    return kept


def without_named(fields: list[bytes], connection: bytes) -> list[bytes]:
    """The fields minus those the Connection field names (RFC 9110 7.6.1: they are
    hop-by-hop too), each field as four parts (name, b": ", value, CRLF). The same list
    when it names none."""
    named = connection_tokens(connection) - CONNECTION_OPTIONS
    return _drop_named(fields, named) if named else fields


def forwarded_fields(xff: bytes | None, client: bytes, proto: bytes | None, scheme: bytes, usual: bytes) -> bytes:
    """The X-Forwarded-For and X-Forwarded-Proto lines. `proto` is a trusted proxy's
    scheme (None if none), `scheme` the connection's own, `usual` the ready-made lines of
    a request that brings neither (the same for every request of a connection)."""
    if xff:
        return b"X-Forwarded-For: %s, %s\r\nX-Forwarded-Proto: %s\r\n" % (xff, client, proto or scheme)
    if proto is None:
        return usual
    return b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n" % (client, proto)


def request_head(method: bytes, url: bytes, fields: list[bytes], host: bytes | None, default_host: str,
                 tenant_line: bytes | None, forwarded: bytes, request_id: bytes, chunked: bool,
                 content_length: int | None, upgrade: bytes | None) -> bytes:
    """The head sent upstream: the request line, the client's end-to-end fields as they
    came (hop-by-hop ones were never collected; whole lines or their parts, in order),
    then the router's own: Host when the client sent none (HTTP/1.0), the tenant,
    X-Forwarded-*, X-Request-ID and the framing of the body as it will be sent."""
    out = [method, b" ", url, b" HTTP/1.1\r\n"]
    out += fields
    if host is None:
        out.append(b"Host: " + default_host.encode() + CRLF)
    if tenant_line is not None:
        out.append(tenant_line)
    out.append(forwarded)
    if host is not None:
        out.append(b"".join((b"X-Forwarded-Host: ", host, b"\r\nX-Request-ID: ", request_id, CRLF)))
    else:
        out.append(b"X-Request-ID: " + request_id + CRLF)
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif content_length is not None:
        out.append(b"Content-Length: %d\r\n" % content_length)
    if upgrade is not None:
        out.append(b"Connection: Upgrade\r\nUpgrade: " + upgrade + CRLF)
    out.append(CRLF)
    return b"".join(out)


def response_connection(fields: list[bytes], connection: bytes, upgrade: bytes | None,
                        status: int) -> tuple[list[bytes], bool]:
    """A response's fields after its Connection field, and whether it says close.

    `fields` holds each field as four parts (name, b": ", value, CRLF), as the relay
    collects them (router.proxy.upstream), and so does the result. The fields Connection
    names go (RFC 9110 7.6.1); a 101 keeps Connection and Upgrade, which are the switch
    itself."""
    tokens = connection_tokens(connection)
    named = tokens - CONNECTION_OPTIONS
    kept = _drop_named(fields, named) if named else list(fields)
    if status == 101:
        kept += (b"Connection", b": ", connection, CRLF)
        if upgrade is not None:
            kept += (b"Upgrade", b": ", upgrade, CRLF)
    return kept, b"close" in tokens


def response_head(status: int, fields: list[bytes] | None, length: bytes | None, relay: Relay,
                  stamp_line: bytes | None, failover_line: bytes | None, close: bool, http10: bool) -> bytes:
    """The head relayed to the client. `fields` are the backend's, whole lines or parts
    of lines in order (joined as they are).

    The standard reason phrase, not the backend's: clients ignore it (RFC 9112 4), and
    taking it from a table spares a parser callback per response. The framing fields are
    the relay's (router.proxy.framing), and the connection's persistence is the router's
    own with the client.
    """
    out = [STATUS_LINES.get(status) or status_line(status)]
    if fields:
        out += fields
    if length is not None and relay != _CHUNKED and relay != _RAW_CLOSE:
        out.append(b"".join((b"Content-Length: ", length, CRLF)))
    elif relay == _CHUNKED:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if stamp_line is not None:
        out.append(stamp_line)
        if failover_line is not None:
            out.append(failover_line)
    if status != 101:
        if close:
            out.append(b"Connection: close\r\n")
        elif http10:
            out.append(b"Connection: keep-alive\r\n")
    out.append(CRLF)
    return b"".join(out)
