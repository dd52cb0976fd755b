"""Per-snapshot settings of the data path, derived once per reload.

The proxy reads these on every request; computing them here keeps attribute chains
(cfg.timeouts.upstream ...) and header-name encoding off the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.core.snapshot import Snapshot
from router.proxy.forwarded import Trusted, trust_check

# Which request header feeds which fact. Values index ProxySettings.interest.
H_HOST, H_TENANT, H_AUTH, H_GEO, H_REQUEST_ID, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, \
    H_CONNECTION, H_UPGRADE, H_EXPECT, H_XFF, H_XF_PROTO, H_XF_HOST, H_HOP = range(14)
H_PASS = -1   # an end-to-end field: forwarded as it came

# Fields clients commonly send that the router passes through: with their usual
# spellings in ProxySettings.spelled, most request fields cost one dict lookup and
# no .lower().
_COMMON_PASS = (b"User-Agent", b"Accept", b"Accept-Encoding", b"Accept-Language", b"Cookie", b"Referer",
                b"Origin", b"Content-Type", b"Cache-Control", b"Pragma", b"If-None-Match",
                b"If-Modified-Since", b"Sec-Fetch-Site", b"Sec-Fetch-Mode", b"Sec-Fetch-Dest", b"DNT")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    interest: dict[bytes, int]        # lowercased header name -> H_* index
    spelled: dict[bytes, int]         # usual spellings -> H_* index or H_PASS (a cache of the above)
    tenant_header: bytes              # as sent upstream (configured spelling)
    stamp_header: bytes               # b"" when off
    stamp_lines: dict[str, bytes]     # stamp -> its ready-made response header line ({} when off)
    connect_timeout: float
    header_timeout: float
    upstream_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    balance_rr: bool
    retry_attempts: int
    retry_budget: float
    forwarded_proto: bytes            # X-Forwarded-Proto unless a trusted proxy says otherwise
    trusted: Trusted | None           # is this address a trusted proxy? None: none configured


def settings_for(snap: Snapshot) -> ProxySettings:
    cfg = snap.config
    interest = {
        b"host": H_HOST, b"authorization": H_AUTH, b"x-request-id": H_REQUEST_ID,
        b"content-length": H_CONTENT_LENGTH, b"transfer-encoding": H_TRANSFER_ENCODING,
        b"connection": H_CONNECTION, b"upgrade": H_UPGRADE, b"expect": H_EXPECT,
        b"x-forwarded-for": H_XFF, b"x-forwarded-proto": H_XF_PROTO, b"x-forwarded-host": H_XF_HOST,
        b"keep-alive": H_HOP, b"proxy-connection": H_HOP, b"te": H_HOP, b"trailer": H_HOP,
        b"proxy-authorization": H_HOP, b"proxy-authenticate": H_HOP,
    }
    # The tenant header is always replaced upstream, whichever sources are configured.
    interest[cfg.routing.tenant_header.lower().encode()] = H_TENANT
    interest[cfg.geo.header.lower().encode()] = H_GEO
    spelled = {name: H_PASS for name in _COMMON_PASS if name.lower() not in interest}
    spelled.update({name.title(): kind for name, kind in interest.items()})
    spelled.update({b"TE": H_HOP, b"X-Request-ID": H_REQUEST_ID, b"X-Forwarded-For": H_XFF,
                    cfg.routing.tenant_header.encode(): H_TENANT, cfg.geo.header.encode(): H_GEO})
    spelled.update({name: kind for name, kind in interest.items()})
    return ProxySettings(
        interest=interest,
        spelled=spelled,
        tenant_header=cfg.routing.tenant_header.encode(),
        stamp_header=cfg.routing.stamp_header.encode(),
        stamp_lines={name: f"{cfg.routing.stamp_header}: {name}\r\n".encode() for name in snap.stamps}
        if cfg.routing.stamp_header else {},
        connect_timeout=cfg.timeouts.connect,
        header_timeout=cfg.timeouts.request_header,
        upstream_timeout=cfg.timeouts.upstream,
        idle_timeout=cfg.timeouts.idle,
        max_header_bytes=cfg.limits.max_header_bytes,
        max_body_bytes=cfg.limits.max_body_bytes,
        balance_rr=cfg.routing.balance == "round_robin",
        retry_attempts=cfg.retry.attempts,
        retry_budget=cfg.retry.budget,
        forwarded_proto=cfg.listen.forwarded_proto.encode(),
        trusted=trust_check(cfg.listen.trusted_proxies),
    )
