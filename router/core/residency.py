"""The data residency of a request, for placing a tenant that has no pin.

Rules it keeps (docs/placement.md, "Residency"):

1. Residency-aware placement is on when the config lists `placement.residency_from` or
   sets `placement.default_residency`; otherwise an unpinned tenant is placed over every
   active stamp (and `stamp-router check` warns if they span several residencies).
2. The ways listed in `residency_from` are tried in order, and the first that names a
   residency wins:
   - `domain`: the Host is a domain of `domain_residency`, or under one (longest first);
   - `claim`: the verified bearer token's `jwt.residency_claim` (a token that does not
     verify is refused, as the jwt source refuses it: never place on an unverified claim);
   - `geo`: the geo header's country, through `geo.regions`, gives a region, and the
     region's stamps share one residency (the config check makes sure they do).
3. None of them: `default_residency`, if set. Still none: refused, 421 `residency_unknown`.
4. A residency that no stamp has is refused the same way (this router cannot serve it);
   one whose stamps are none of them active with weight is 503 `no_residency_stamp`.
5. Within the residency, the tenant's stamp is the one its table (router.core.placement,
   one per residency, built once per snapshot) names: the same contract as without
   residency, over fewer stamps. Placement never crosses a residency.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Protocol

from router.core.placement import Placement
from router.core.sources import RequestFacts, normalize_host


class ResidencyFrom(enum.Enum):
    DOMAIN = "domain"
    CLAIM = "claim"
    GEO = "geo"
    DEFAULT = "default"


class ResidencyClaim(Protocol):
    """What the residency rule needs of the jwt source (router.core.jwt_source)."""

    residency_claim: str | None

    def claimed_residency(self, facts: RequestFacts, now: float) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Found:
    residency: str | None
    origin: ResidencyFrom | None
    detail: str                         # what it was read from, for explanations


@dataclass(frozen=True, slots=True)
class ResidencyRule:
    order: tuple[ResidencyFrom, ...]
    domains: tuple[tuple[str, str], ...]          # (domain, residency), longest domain first
    claim: ResidencyClaim | None
    countries: Mapping[str, str]                  # country code -> residency
    default: str | None
    placements: Mapping[str, Placement]           # residency -> table over its active stamps
    known: frozenset[str]                         # residencies that any stamp has

    def find(self, facts: RequestFacts, now: float) -> Found:
        """The request's residency; may raise TenantRejected (a bad token, via the claim)."""
        for way in self.order:
            if way is ResidencyFrom.DOMAIN:
                host = facts.host
                if host:
                    host = normalize_host(host)
                    for domain, residency in self.domains:
                        if host == domain or host.endswith("." + domain):
                            return Found(residency, way, f"domain {domain!r}")
            elif way is ResidencyFrom.CLAIM:
                if self.claim is not None:
                    residency = self.claim.claimed_residency(facts, now)
                    if residency is not None:
                        return Found(residency, way, f"claim {self.claim.residency_claim!r}")
            elif way is ResidencyFrom.GEO:
                country = (facts.geo or "").strip().upper()
                residency = self.countries.get(country)
                if residency is not None:
                    return Found(residency, way, f"country {country!r}")
        if self.default is not None:
            return Found(self.default, ResidencyFrom.DEFAULT, "placement.default_residency")
        return Found(None, None, "")


def build_residency_rule(order: tuple[str, ...], domains: Mapping[str, str], claim: ResidencyClaim | None,
                         region_countries: Mapping[str, tuple[str, ...]],
                         region_residency: Mapping[str, str], default: str | None,
                         placements: Mapping[str, Placement], known: frozenset[str]) -> ResidencyRule:
    countries = {cc: region_residency[region] for region, ccs in region_countries.items()
                 if region in region_residency for cc in ccs}
    by_length = sorted(((d.lower().rstrip("."), r) for d, r in domains.items()), key=lambda p: len(p[0]), reverse=True)
    return ResidencyRule(order=tuple(ResidencyFrom(w) for w in order), domains=tuple(by_length), claim=claim,
                         countries=countries, default=default, placements=placements, known=known)
