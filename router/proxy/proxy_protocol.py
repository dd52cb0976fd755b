"""The PROXY protocol header (HAProxy's spec, versions 1 and 2), sans IO.

A layer-4 load balancer (HAProxy `send-proxy`, AWS NLB, ...) opens each connection with
one header naming the client it accepted. The parser is written here rather than taken
from a package: it is sixty lines of the spec's fixed layouts, and the packages on PyPI
for it are small and unmaintained.

`parse(buf)` returns None while the header is incomplete, else `(length, address, tls)`:
the header's size in `buf`; the client address, or None when the header names none
(v1 `UNKNOWN`, v2 `LOCAL` such as the balancer's own health checks, or a family other
than TCP over IPv4/IPv6); and whether a v2 `PP2_TYPE_SSL` TLV says the client spoke TLS
to the balancer (HAProxy's `send-proxy-v2-ssl`). Anything else raises ProxyHeaderError.
"""

from __future__ import annotations

import ipaddress

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                        # the spec's longest v1 line, CRLF included
V2_MAX_BODY = 2048                  # addresses and TLVs; the spec allows up to 65535
_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}
_V2_ADDRESS_BYTES = {0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36}   # TCP/UDP over IPv4, IPv6
PP2_TYPE_SSL, PP2_CLIENT_SSL = 0x20, 0x01


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header, or a malformed one: the connection is closed."""


def parse(buf: bytes) -> tuple[int, str | None, bool] | None:
    if buf[:1] == b"P":
        return _parse_v1(buf)
    if buf[:1] == b"\r":
        return _parse_v2(buf)
    raise ProxyHeaderError("the connection does not start with a PROXY protocol header")


def _parse_v1(buf: bytes) -> tuple[int, str | None, bool] | None:
    end = buf.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if not b"PROXY ".startswith(buf[:6]):
            raise ProxyHeaderError("not a PROXY v1 line")
        if len(buf) >= V1_MAX:
            raise ProxyHeaderError("no end of the PROXY v1 line within 107 bytes")
        return None
    parts = buf[:end].split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise ProxyHeaderError("not a PROXY v1 line")
    if parts[1] == b"UNKNOWN":
        return end + 2, None, False
    version = _V1_FAMILIES.get(parts[1])
    if version is None or len(parts) != 6:
        raise ProxyHeaderError("PROXY v1 line is not TCP4/TCP6 with two addresses and two ports")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        ipaddress.ip_address(parts[3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError("PROXY v1 line with an invalid address") from None
    if source.version != version:
        raise ProxyHeaderError("PROXY v1 address does not match its family")
    for port in parts[4:6]:
        if not port.isdigit() or int(port) > 65535 or (len(port) > 1 and port[:1] == b"0"):
            raise ProxyHeaderError("PROXY v1 line with an invalid port")
    return end + 2, str(source), False


def _parse_v2(buf: bytes) -> tuple[int, str | None, bool] | None:
    if len(buf) < 16:
        if not V2_SIGNATURE.startswith(buf[:12]):
            raise ProxyHeaderError("the connection does not start with a PROXY protocol header")
        return None
    if buf[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("the connection does not start with a PROXY protocol header")
    version_command, family = buf[12], buf[13]
    length = int.from_bytes(buf[14:16], "big")
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyHeaderError("PROXY v2 header with an unknown version or command")
    if length > V2_MAX_BODY:
        raise ProxyHeaderError(f"PROXY v2 header longer than {V2_MAX_BODY} bytes")
    if len(buf) < 16 + length:
        return None
    if version_command & 0x0F == 0:         # LOCAL: the balancer speaking for itself
        return 16 + length, None, False
    need = _V2_ADDRESS_BYTES.get(family)
    if need is None:                        # UNSPEC or UNIX sockets: no address to use
        return 16 + length, None, False
    if length < need:
        raise ProxyHeaderError("PROXY v2 header too short for its address family")
    raw = buf[16:20] if need == 12 else buf[16:32]
    return 16 + length, str(ipaddress.ip_address(raw)), _client_tls(buf[16 + need:16 + length])


def _client_tls(tlvs: bytes) -> bool:
    """Whether the TLVs after the addresses hold PP2_TYPE_SSL with PP2_CLIENT_SSL set.
    Malformed TLVs claim nothing: the addresses are sound, and no other TLV is used."""
    at = 0
    while at + 3 <= len(tlvs):
        kind, size = tlvs[at], int.from_bytes(tlvs[at + 1:at + 3], "big")
        if at + 3 + size > len(tlvs):
            return False
        if kind == PP2_TYPE_SSL and size >= 1:
            return bool(tlvs[at + 3] & PP2_CLIENT_SSL)
        at += 3 + size
    return False
