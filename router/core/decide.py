"""decide(): the whole routing decision (docs/operations.md, docs/placement.md), as one pure function.

Inputs are the request facts, the current snapshot, a health view and the time; the
output is a `Decision`. No I/O, no clock, no mutation: the proxy, `/route` and
`stamp-router route` all call this and only differ in what they do with the answer.
"""

from __future__ import annotations

from router.core.decision import DEFAULT, FAILOVER, GEO, HASH, PAUSED, PINNED, Decision, forward
from router.core.hashing import hrw_score, key_hash
from router.core.health_view import HealthView
from router.core.snapshot import Snapshot
from router.core.sources import RequestFacts, TenantRejected
from router.errors import ErrorKind

# RFC 9110 9.2.1: methods that do not change state; a read-only pin lets only these pass.
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


def decide(facts: RequestFacts, snap: Snapshot, health: HealthView, now: float,
           explain: bool = False) -> Decision:
    steps: list[str] | None = [] if explain else None

    if snap.strict_hosts and snap.subdomain is not None:
        host = facts.host
        if not host or not snap.subdomain.known_host(host):
            return Decision(None, None, None, None, error=ErrorKind.UNKNOWN_HOST,
                            message=f"host {host!r} is not served here")

    tenant = source = None
    for src in snap.sources:
        try:
            tenant = src.resolve(facts, now) if steps is None else _resolve_explained(src, facts, now, steps)
        except TenantRejected as exc:
            return Decision(None, src.name, None, None, error=exc.kind, message=exc.message,
                            considered=tuple(steps or ()) + (f"{src.name}: {exc.message}",) if explain else (),
                            www_authenticate=exc.www_authenticate)
        if tenant is not None:
            source = src.name
            if steps is not None:
                steps.append(f"{src.name}: tenant {tenant!r}")
            break
        if steps is not None:
            steps.append(f"{src.name}: no tenant")

    mode = None
    if tenant is not None:
        name = snap.pins.get(tenant)
        if name is not None:
            reason = PINNED
            mode = snap.modes.get(tenant)
            if mode is not None:
                if mode == PAUSED:
                    # A hold, not a refusal: the proxy parks the request until the pause
                    # ends and decides it again on the pin current then.
                    if steps is not None:
                        steps.append(f"{PINNED}: stamp {name!r}, paused: held until the pause ends")
                    return Decision(tenant, source, None, PINNED, error=ErrorKind.TENANT_PAUSED, mode=mode,
                                    message=f"tenant {tenant!r} is paused (being moved); try again shortly",
                                    retry_after=snap.retry_after,
                                    considered=tuple(steps or ()))
                if facts.method not in SAFE_METHODS:
                    if steps is not None:
                        steps.append(f"{PINNED}: stamp {name!r}, read-only: {facts.method} refused")
                    return Decision(tenant, source, None, PINNED, error=ErrorKind.TENANT_READ_ONLY, mode=mode,
                                    message=f"tenant {tenant!r} is read-only; {facts.method} is refused",
                                    considered=tuple(steps or ()))
        elif snap.unpinned == "hash":
            reason = HASH
            if snap.residency is not None:
                placed = _place_in_residency(tenant, source, facts, snap, now, steps)
                if type(placed) is not str:
                    return placed
                name = placed
            else:
                name = snap.placement.lookup(tenant)
            if name is None:
                if steps is not None:
                    steps.append(f"{HASH}: no active stamp with weight takes new tenants")
                return Decision(tenant, source, None, HASH, error=ErrorKind.NO_HEALTHY_STAMP,
                                message="no active stamp takes new tenants", retry_after=snap.retry_after,
                                considered=tuple(steps or ()))
        else:
            if steps is not None:
                steps.append("not pinned, and routing.unpinned = \"reject\"")
            return Decision(tenant, source, None, None, error=ErrorKind.UNKNOWN_TENANT,
                            message=f"tenant {tenant!r} is not pinned to any stamp",
                            considered=tuple(steps or ()))
        if steps is not None:
            steps.append(f"{reason}: stamp {name!r}")
    elif snap.anonymous == "geo":
        return _decide_geo(facts, snap, health, steps)
    elif snap.anonymous_stamp is not None:
        name, reason = snap.anonymous_stamp, DEFAULT
        if steps is not None:
            steps.append(f"anonymous: default stamp {name!r}")
    else:
        kind = ErrorKind.UNAUTHENTICATED if snap.jwt_in_sources else ErrorKind.NO_ROUTE
        return Decision(None, None, None, None, error=kind, considered=tuple(steps or ()),
                        message="no tenant in the request" + (" (a bearer token is required)" if snap.jwt_in_sources else ""),
                        www_authenticate="Bearer" if snap.jwt_in_sources else None)

    # The placed stamp if it can serve (inline: nearly every request ends here), else
    # the first of its failover list that can.
    stamp = snap.stamps[name]
    backends = health.healthy_backends(stamp) if stamp.state != "offline" else ()
    if backends:
        return forward(tenant, source, name, reason, backends, mode, tuple(steps) if steps else ())
    return _failover(tenant, source, name, reason, mode, stamp, snap, health, steps)


def _place_in_residency(tenant: str, source: str | None, facts: RequestFacts, snap: Snapshot, now: float,
                        steps: list[str] | None) -> str | Decision:
    """The stamp of an unpinned tenant among the active stamps of its request's residency
    (router.core.residency), or the refusal."""
    rule = snap.residency
    try:
        found = rule.find(facts, now)
    except TenantRejected as exc:
        return Decision(tenant, source, None, HASH, error=exc.kind, message=exc.message,
                        considered=tuple(steps or ()) + (f"residency: {exc.message}",) if steps is not None else (),
                        www_authenticate=exc.www_authenticate)
    residency = found.residency
    if residency is None or residency not in rule.known:
        message = (f"no stamp here is in residency {residency!r}" if residency is not None
                   else "the request does not say its data residency, and placement.default_residency is not set")
        if steps is not None:
            steps.append(f"residency: {residency!r} from {found.detail}: no stamp has it" if residency is not None
                         else f"residency: none found ({', '.join(w.value for w in rule.order) or 'no way listed'})")
        return Decision(tenant, source, None, HASH, error=ErrorKind.RESIDENCY_UNKNOWN,
                        message=message, considered=tuple(steps or ()))
    if steps is not None:
        steps.append(f"residency: {residency!r} from {found.detail}")
    name = rule.placements[residency].lookup(tenant)
    if name is None:
        if steps is not None:
            steps.append(f"{HASH}: no active stamp with weight in residency {residency!r}")
        return Decision(tenant, source, None, HASH, error=ErrorKind.NO_RESIDENCY_STAMP,
                        message=f"no active stamp of residency {residency!r} takes new tenants",
                        retry_after=snap.retry_after, considered=tuple(steps or ()))
    return name


def _resolve_explained(src, facts: RequestFacts, now: float, steps: list[str]) -> str | None:
    """A source may explain its own steps (the jwt source names the key and the claim);
    only the explain path looks for the hook, so routing pays nothing for it."""
    hook = getattr(src, "resolve_explained", None)
    return src.resolve(facts, now) if hook is None else hook(facts, now, steps)


def _failover(tenant, source, name, reason, mode, stamp, snap: Snapshot, health: HealthView,
              steps: list[str] | None) -> Decision:
    """The placed stamp cannot serve: the first of its failover list that can."""
    if steps is not None:
        steps.append(f"stamp {name!r} cannot serve ({'offline' if stamp.state == 'offline' else 'no healthy backend'})")
    for alt_name in stamp.failover:
        alt = snap.stamps[alt_name]
        alt_backends = health.healthy_backends(alt) if alt.state != "offline" else ()
        if alt_backends:
            if steps is not None:
                steps.append(f"failover: stamp {alt_name!r}")
            return Decision(tenant, source, alt_name, FAILOVER, alt_backends, placed=name, placed_by=reason,
                            mode=mode, considered=tuple(steps or ()))
        if steps is not None:
            steps.append(f"failover candidate {alt_name!r} cannot serve")
    return Decision(tenant, source, None, reason, error=ErrorKind.NO_HEALTHY_STAMP, placed=name, placed_by=reason,
                    message=f"stamp {name!r} has no healthy backend and no failover stamp can serve",
                    retry_after=snap.retry_after, mode=mode, considered=tuple(steps or ()))


def _decide_geo(facts: RequestFacts, snap: Snapshot, health: HealthView,
                steps: list[str] | None) -> Decision:
    country = (facts.geo or "").strip().upper()
    region = snap.geo_countries.get(country)
    if region is None:
        region = snap.geo_default
        if steps is not None:
            steps.append(f"geo: country {country or '(none)'!r} unknown, default region {region!r}")
    elif steps is not None:
        steps.append(f"geo: country {country!r} -> region {region!r}")
    # Rendezvous over the region's stamps that can serve now: stable per client address,
    # and only the clients of a stamp that went down move.
    key = key_hash(facts.client)
    best = best_score = None
    for stamp in snap.region_stamps.get(region, ()):
        backends = health.healthy_backends(stamp)
        if not backends:
            continue
        score = hrw_score(key, stamp.seed, stamp.weight)
        if best is None or score > best_score:
            best, best_score, best_backends = stamp, score, backends
    if best is None:
        return Decision(None, None, None, GEO, error=ErrorKind.NO_HEALTHY_STAMP,
                        message=f"no active stamp of region {region!r} can serve",
                        retry_after=snap.retry_after, considered=tuple(steps or ()))
    if steps is not None:
        steps.append(f"geo: stamp {best.name!r} by client address")
    return Decision(None, None, best.name, GEO, best_backends, considered=tuple(steps or ()))
