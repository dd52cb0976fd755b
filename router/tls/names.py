"""Which certificate serves a name, and whether a connection's SNI covers a request's Host.

Pure functions over strings: no ssl, no files. Names are compared lowercased, without a
trailing dot. A wildcard covers exactly one label (RFC 6125 6.4.3): `*.example.com`
covers `a.example.com`, not `example.com` nor `a.b.example.com`.
"""

from __future__ import annotations

from typing import Generic, Iterable, TypeVar

from router.core.sources import normalize_host

T = TypeVar("T")


def normalize_name(name: str) -> str:
    return name.lower().rstrip(".")


def wildcard_of(name: str) -> str | None:
    """The wildcard name that would cover `name`, or None for a single-label name."""
    _, dot, parent = name.partition(".")
    return "*." + parent if dot and parent else None


def covers(pattern: str, name: str) -> bool:
    """Whether a certificate name (exact or `*.` wildcard) covers `name`."""
    name = normalize_name(name)
    if pattern.startswith("*."):
        return wildcard_of(name) == pattern
    return pattern == name


class NameTable(Generic[T]):
    """Name -> value, exact names before wildcards; the first value given a name keeps it."""

    __slots__ = ("exact", "default")

    def __init__(self, entries: Iterable[tuple[Iterable[str], T]]) -> None:
        self.exact: dict[str, T] = {}
        self.default: T | None = None
        for names, value in entries:
            if self.default is None:
                self.default = value
            for name in names:
                self.exact.setdefault(normalize_name(name), value)

    def lookup(self, name: str) -> T | None:
        name = normalize_name(name)
        value = self.exact.get(name)
        if value is None:
            wild = wildcard_of(name)
            if wild is not None:
                value = self.exact.get(wild)
        return value


def host_matches_sni(host: bytes | None, sni: str) -> bool:
    """A request's Host against its connection's SNI (already lowercased, no trailing dot).

    The Host must name the very name the client asked the TLS layer for: a wildcard
    certificate covering both is not enough, or a client could open a connection for
    its own tenant's name and send requests for another's (domain fronting).
    """
    if host is None:
        return True      # HTTP/1.0 without Host: routing sees no name to misuse
    return normalize_host(host.decode("latin-1")) == sni
