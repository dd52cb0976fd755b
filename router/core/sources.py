"""The tenant source chain (docs/config.md, routing.sources).

Each source looks at the request facts and returns a tenant id, None ("not here, try
the next source"), or raises `TenantRejected` ("here, and wrong": never fall through).
A source is an object with a `name` and `resolve(facts, now)`; the jwt source
(router.core.jwt_source) has the same shape, so the chain is just a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from router.core.tenant import MAX_TENANT_LEN, TENANT_RE

_tenant_fullmatch = TENANT_RE.fullmatch
from router.errors import ErrorKind


class RequestFacts(Protocol):
    """What the core reads of a request. The proxy's request object has these attributes."""

    method: str
    host: str | None            # Host header as sent
    tenant_header: str | None   # value of routing.tenant_header
    authorization: str | None   # value of Authorization
    geo: str | None             # value of geo.header
    client: str                 # client IP address
    client_cert_cn: str | None  # subject CN of the verified TLS client certificate


@dataclass(frozen=True, slots=True)
class Facts:
    """Request facts as a plain value: for decisions explained outside the data path
    (`stamp-router route`, GET /route) and for tests."""

    method: str = "GET"
    host: str | None = None
    tenant_header: str | None = None
    authorization: str | None = None
    geo: str | None = None
    client: str = "127.0.0.1"
    client_cert_cn: str | None = None

    @classmethod
    def of(cls, *, method: str = "GET", host: str | None = None, tenant: str | None = None,
           token: str | None = None, country: str | None = None, client: str | None = None,
           client_cn: str | None = None) -> Facts:
        return cls(method=method.upper(), host=host, tenant_header=tenant,
                   authorization=f"Bearer {token}" if token else None, geo=country,
                   client=client or "127.0.0.1", client_cert_cn=client_cn)


class TenantRejected(Exception):
    """A source found a tenant claim and it is invalid; the request ends here."""

    def __init__(self, kind: ErrorKind, message: str, *, www_authenticate: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.www_authenticate = www_authenticate


class TenantSource:
    """A source of the chain: its `name`, and resolve(). Every source extends this; a class
    rather than a protocol for the compiled build (sources.pxd), where decide() calls a
    source's resolve() as C."""

    name = ""
    __slots__ = ()

    def resolve(self, facts: RequestFacts, now: float) -> str | None:
        raise NotImplementedError


def normalize_host(host: str) -> str:
    """Lowercase, without port and trailing dot (RFC 9110 7.2: Host is case-insensitive)."""
    host = host.lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    colon = host.rfind(":")
    if colon >= 0:
        host = host[:colon]
    return host.rstrip(".")


def invalid_tenant(value: str, origin: str) -> TenantRejected:
    shown = value if len(value) <= 40 else value[:40] + "..."
    return TenantRejected(ErrorKind.INVALID_TENANT,
                          f"invalid tenant id {shown!r} from {origin}: 1 to {MAX_TENANT_LEN} of A-Z a-z 0-9 . _ -")


def check_tenant(value: str, origin: str) -> str:
    if _tenant_fullmatch(value) is None:
        raise invalid_tenant(value, origin)
    return value


class SubdomainSource(TenantSource):
    """`<tenant>.<domain>` for a configured domain; exactly one label."""

    name = "subdomain"
    __slots__ = ("suffixes", "_cache")

    def __init__(self, domains: tuple[str, ...]) -> None:
        # Longest domain first, so "a.eu.example.com" matches eu.example.com before example.com.
        self.suffixes = tuple("." + d.lower().rstrip(".") for d in sorted(domains, key=len, reverse=True))

    def label(self, host: str) -> str | None:
        host = normalize_host(host)
        for suffix in self.suffixes:
            # A configured domain itself names no tenant, even when it sits one label
            # under another configured domain (eu.example.com under example.com).
            if host == suffix[1:]:
                return None
            if host.endswith(suffix):
                label = host[:-len(suffix)]
                return label if label and "." not in label else None
        return None

    def resolve(self, facts: RequestFacts, now: float) -> str | None:
        host = facts.host
        if not host:
            return None
        label = self.label(host)
        return None if label is None else check_tenant(label, "the Host subdomain")

    def known_host(self, host: str) -> bool:
        """Whether `host` is a configured domain or one label under one (strict_hosts)."""
        host = normalize_host(host)
        return any(host == s[1:] or (host.endswith(s) and "." not in host[:-len(s)] and host[:-len(s)])
                   for s in self.suffixes)


class HeaderSource(TenantSource):
    name = "header"
    __slots__ = ("header", "origin", "pinned")

    def __init__(self, header: str, pinned: Mapping[str, str] | None = None) -> None:
        self.header = header
        self.origin = f"the {header} header"
        self.pinned = pinned or {}

    def resolve(self, facts: RequestFacts, now: float) -> str | None:
        value = facts.tenant_header
        if value is None:
            return None
        # A pinned id was validated when the table loaded; only others need the check.
        if value not in self.pinned and _tenant_fullmatch(value) is None:
            raise invalid_tenant(value, self.origin)
        return value


class MtlsSource(TenantSource):
    """The subject CN of the client certificate the TLS layer verified (listen.client_ca_file):
    for B2B tenants that authenticate with certificates. Without a certificate (plain HTTP,
    or client_verify = "optional"), the next source is asked."""

    name = "mtls"
    __slots__ = ()
    origin = "the client certificate's subject CN"

    def resolve(self, facts: RequestFacts, now: float) -> str | None:
        cn = facts.client_cert_cn
        return None if cn is None else check_tenant(cn, self.origin)
