"""`host:port` strings, as used for listeners and backends, and IP networks."""

from __future__ import annotations

import ipaddress
import re

_HOST_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def is_host_name(value: str) -> bool:
    """A DNS name of letter-digit-hyphen labels (RFC 1123 2.1), a trailing dot allowed."""
    return value.isascii() and _HOST_RE.fullmatch(value) is not None


def parse_hostport(value: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; raise ValueError with a reason otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected \"host:port\"")
    if not value.isascii():
        # str.isdigit() and \d also take non-ASCII digits ("٨٠"), which no resolver does.
        raise ValueError(f"{value!r}: only ASCII (write an internationalized name as its xn-- form)")
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError(f"{value!r} is not \"[ipv6]:port\"")
        host, port_s = value[1:end], value[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address (brackets are only for IPv6)") from None
    else:
        host, sep, port_s = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r} is not \"host:port\"")
        if ":" in host:
            raise ValueError(f"{value!r}: write an IPv6 address as \"[addr]:port\"")
        # An all-digit last label is never a name (RFC 3696 section 2), and resolvers
        # read "10.1" or "167772161" as inet_aton shorthands for some other address.
        if host.rstrip(".").rpartition(".")[2].isdigit():
            if not _IPV4_RE.fullmatch(host) or any(int(part) > 255 for part in host.split(".")):
                raise ValueError(f"{value!r}: {host!r} is neither an IPv4 address nor a host name")
        elif not _HOST_RE.fullmatch(host):
            raise ValueError(f"{value!r}: {host!r} is not a valid host name")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"{value!r}: port must be 1 to 65535")
    return host, int(port_s)


def parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address ("10.0.0.7", "::1") or a network in CIDR form ("10.0.0.0/8"); host bits
    set under the mask are refused, since "10.0.0.7/8" is more likely a typo than a wish."""
    if not isinstance(value, str) or not value.isascii():
        raise ValueError(f"{value!r} is not an IP address or network")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address or network (CIDR): {exc}") from None
