"""The immutable routing snapshot: everything a decision reads, built once per reload.

A snapshot is shared by every request decided while it is current; a reload builds a new
one and swaps the single reference (router.control). Nothing in it changes after build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from router.core.hashing import key_hash
from router.core.placement import Placement, build_placement
from router.core.residency import ResidencyRule, build_residency_rule
from router.core.sources import HeaderSource, MtlsSource, SubdomainSource, TenantSource

if TYPE_CHECKING:  # the config package imports core.tenant; avoid the cycle at run time
    from router.config.load import ValidConfig


@dataclass(frozen=True, slots=True)
class StampView:
    name: str
    region: str
    residency: str
    state: str                       # active | draining | offline
    weight: int
    backends: tuple[str, ...]
    public: tuple[str, ...]
    failover: tuple[str, ...]
    panic_threshold: float
    seed: int                        # key_hash(name), for rendezvous picks


@dataclass(frozen=True, slots=True)
class Snapshot:
    # The mappings are plain dicts, never mutated after build: a MappingProxyType would
    # add a level of indirection to every lookup on the request path.
    valid: "ValidConfig" = field(repr=False)
    loaded_at: float                 # wall-clock seconds when it was accepted
    stamps: Mapping[str, StampView]
    pins: Mapping[str, str]
    modes: Mapping[str, str]
    placement: Placement
    sources: tuple[TenantSource, ...]
    subdomain: SubdomainSource | None
    unpinned: str                    # hash | reject
    anonymous: str                   # geo | reject | stamp:NAME
    anonymous_stamp: str | None
    geo_countries: Mapping[str, str]  # country code -> region
    geo_default: str | None
    region_stamps: Mapping[str, tuple[StampView, ...]]  # active stamps by region
    strict_hosts: bool
    retry_after: int
    jwt_in_sources: bool
    residency: ResidencyRule | None  # None: unpinned tenants are placed over every active stamp

    @property
    def config(self):
        return self.valid.config

    @property
    def version(self) -> str:
        return self.valid.version

    @property
    def digest(self) -> str:
        return self.valid.digest


SourceFactory = Callable[["ValidConfig"], TenantSource]


def build_snapshot(valid: "ValidConfig", *, loaded_at: float,
                   extra_sources: Mapping[str, SourceFactory] | None = None) -> Snapshot:
    """Build the snapshot for a validated config.

    `extra_sources` supplies sources whose state lives in an IO shell (the jwt source needs
    the key set that router.jwks keeps fresh); the chain keeps the configured order.
    """
    cfg = valid.config
    stamps = {}
    for s in cfg.stamps:
        stamps[s.name] = StampView(
            name=s.name, region=s.region, residency=s.residency_name, state=s.state, weight=s.weight,
            backends=tuple(s.backends), public=tuple(s.public), failover=tuple(s.failover),
            panic_threshold=s.panic_threshold, seed=key_hash(s.name))

    placement = build_placement(tuple((s.name, s.weight) for s in stamps.values() if s.state == "active"))

    subdomain = SubdomainSource(tuple(cfg.routing.domains)) if cfg.routing.domains else None
    factories: dict[str, Any] = {
        "subdomain": lambda v: subdomain,
        "header": lambda v: HeaderSource(v.config.routing.tenant_header, v.pins),
        "mtls": lambda v: MtlsSource(),
    }
    factories.update(extra_sources or {})
    sources = []
    for name in cfg.routing.sources:
        factory = factories.get(name)
        if factory is None:
            raise ValueError(f"routing.sources: source {name!r} is not available in this process")
        src = factory(valid)
        if src is not None:
            sources.append(src)

    countries = {cc: region for region, ccs in cfg.geo.regions.items() for cc in ccs}
    region_stamps: dict[str, list[StampView]] = {}
    for s in stamps.values():
        if s.state == "active":
            region_stamps.setdefault(s.region, []).append(s)

    anonymous = cfg.routing.anonymous
    return Snapshot(
        residency=_residency_rule(cfg, stamps, sources),
        valid=valid, loaded_at=loaded_at, stamps=stamps, pins=valid.pins,
        modes=valid.modes, placement=placement, sources=tuple(sources), subdomain=subdomain,
        unpinned=cfg.routing.unpinned, anonymous=anonymous,
        anonymous_stamp=anonymous[len("stamp:"):] if anonymous.startswith("stamp:") else None,
        geo_countries=countries, geo_default=cfg.geo.default_region,
        region_stamps={r: tuple(v) for r, v in region_stamps.items()},
        strict_hosts=cfg.routing.strict_hosts, retry_after=max(1, round(cfg.routing.retry_after)),
        jwt_in_sources="jwt" in cfg.routing.sources,
    )


def _residency_rule(cfg, stamps: Mapping[str, StampView], sources: list) -> ResidencyRule | None:
    rules = cfg.placement
    if not rules.residency_from and rules.default_residency is None:
        return None
    members: dict[str, list[tuple[str, int]]] = {}
    region_residencies: dict[str, set[str]] = {}
    for s in stamps.values():
        members.setdefault(s.residency, [])
        region_residencies.setdefault(s.region, set()).add(s.residency)
        if s.state == "active":
            members[s.residency].append((s.name, s.weight))
    claim = next((src for src in sources if src.name == "jwt"), None) if "claim" in rules.residency_from else None
    return build_residency_rule(
        order=tuple(rules.residency_from), domains=rules.domain_residency, claim=claim,
        region_countries={r: tuple(ccs) for r, ccs in cfg.geo.regions.items()},
        # A region whose stamps span residencies says nothing (the config check refuses it for "geo").
        region_residency={r: next(iter(rs)) for r, rs in region_residencies.items() if len(rs) == 1},
        default=rules.default_residency,
        placements={r: build_placement(tuple(m)) for r, m in members.items()},
        known=frozenset(members))
