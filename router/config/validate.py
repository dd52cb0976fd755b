"""Cross-field checks, run over the raw document so they report alongside schema errors.

The schema (pydantic) reports what is wrong with each field; this module reports what is
wrong between fields: names that do not resolve, failover that crosses a residency, and so
on. It reads the raw mapping defensively (a field of the wrong type is the schema's error
to report, not ours), so one pass of `check` shows every problem.
"""

from __future__ import annotations

import re
from itertools import compress, repeat
from operator import is_, is_not
from typing import Any, get_args

from router.config.addresses import is_host_name
from router.config.schema import PinMode
from router.config.units import parse_duration
from router.core.tenant import all_valid_tenants, is_valid_tenant

Errors = list[tuple[str, str]]
_COUNTRY_RE = re.compile(r"[A-Z]{2}")
# Past this many errors of one class, the rest are summed up in one line: a million
# dangling pins would otherwise bury everything else.
MAX_ERRORS_PER_CLASS = 50
KEY_SOURCES = ("jwks_url", "jwks_file", "secret_file")

PIN_MODES = get_args(PinMode)


def key_path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"{prefix}[{key!r}]"


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def stamp_index(raw: dict) -> dict[str, dict]:
    """name -> the raw stamp table, for stamps whose name is a string (first one wins)."""
    out: dict[str, dict] = {}
    for stamp in _list(raw.get("stamps")):
        if isinstance(stamp, dict) and isinstance(stamp.get("name"), str):
            out.setdefault(stamp["name"], stamp)
    return out


def residency_of(stamp: dict) -> Any:
    return stamp.get("residency") or stamp.get("region")


def check_cross_fields(raw: dict) -> Errors:
    errors: Errors = []
    stamps = _list(raw.get("stamps"))
    by_name = stamp_index(raw)

    seen: dict[str, int] = {}
    for i, stamp in enumerate(stamps):
        if not isinstance(stamp, dict) or not isinstance(stamp.get("name"), str):
            continue
        name = stamp["name"]
        if name in seen:
            errors.append((f"stamps[{i}].name", f"duplicate stamp name {name!r} (first at stamps[{seen[name]}])"))
        else:
            seen[name] = i

    for i, stamp in enumerate(stamps):
        if not isinstance(stamp, dict):
            continue
        own, own_res = stamp.get("name"), residency_of(stamp)
        cross_ok = stamp.get("allow_cross_residency_failover") is True
        for j, target in enumerate(_list(stamp.get("failover"))):
            path = f"stamps[{i}].failover[{j}]"
            if not isinstance(target, str):
                continue
            if target == own:
                errors.append((path, f"stamp {own!r} cannot fail over to itself"))
            elif target not in by_name:
                errors.append((path, f"unknown stamp {target!r}"))
            elif not cross_ok:
                res = residency_of(by_name[target])
                if res != own_res:
                    errors.append((path, f"stamp {target!r} is in residency {res!r}, not {own_res!r} "
                                         "(set allow_cross_residency_failover = true on this stamp to allow it)"))

    routing = _dict(raw.get("routing"))
    sources = _list(routing.get("sources")) or ["subdomain", "header"]
    anonymous = routing.get("anonymous", "reject")
    if isinstance(anonymous, str) and anonymous.startswith("stamp:"):
        target = anonymous[len("stamp:"):]
        if target not in by_name:
            errors.append(("routing.anonymous", f"unknown stamp {target!r}"))
    # The default sources name "subdomain" too; only a list the config spells out asks for
    # it, so that a config of stamps alone is valid (subdomain routing needs domains).
    if "subdomain" in _list(routing.get("sources")) and not _list(routing.get("domains")):
        errors.append(("routing.domains", "\"subdomain\" is in routing.sources but no domain is configured"))
    for j, domain in enumerate(_list(routing.get("domains"))):
        if isinstance(domain, str) and not is_host_name(domain):
            errors.append((f"routing.domains[{j}]", f"{domain!r} is not a domain name"))

    jwt = raw.get("jwt")
    if "jwt" in sources:
        if not isinstance(jwt, dict):
            errors.append(("jwt", "\"jwt\" is in routing.sources but there is no [jwt] section"))
        elif not any(jwt.get(k) for k in KEY_SOURCES):
            errors.append(("jwt", "\"jwt\" is in routing.sources but [jwt] sets none of jwks_url, jwks_file, secret_file"))
    if isinstance(jwt, dict):
        given = [k for k in KEY_SOURCES if jwt.get(k)]
        if len(given) > 1:
            errors.append(("jwt", f"set only one key source, not {' and '.join(given)}"))
        # Without the key the schema's default applies, and the checks below must see it.
        algs = [a for a in _list(jwt.get("algorithms", ["RS256", "ES256"])) if isinstance(a, str)]
        hs = [a for a in algs if a in ("HS256", "HS384", "HS512")]   # unknown names are the schema's to report
        if hs and len(hs) != len(algs):
            errors.append(("jwt.algorithms", "HMAC (HS*) algorithms cannot be allowed together with public-key algorithms (key confusion)"))
        if hs and jwt.get("secret_file") is None and given:
            errors.append(("jwt.algorithms", f"{', '.join(hs)} need secret_file"))
        if jwt.get("secret_file") and algs and not hs:
            errors.append(("jwt.secret_file", "a shared secret only verifies HS256/384/512; allow one of them"))
        errors.extend(check_jwt_details(jwt))

    geo = _dict(raw.get("geo"))
    regions_with_stamps = {s.get("region") for s in by_name.values()}
    country_owner: dict[str, str] = {}
    for region, countries in _dict(geo.get("regions")).items():
        if region not in regions_with_stamps:
            errors.append((key_path("geo.regions", region), f"no stamp is in region {region!r}"))
        for j, cc in enumerate(_list(countries)):
            if not isinstance(cc, str) or not _COUNTRY_RE.fullmatch(cc):
                errors.append((f"{key_path('geo.regions', region)}[{j}]", f"{cc!r} is not an ISO 3166 country code (two capital letters)"))
            elif cc in country_owner:
                errors.append((f"{key_path('geo.regions', region)}[{j}]", f"country {cc} is already in region {country_owner[cc]!r}"))
            else:
                country_owner[cc] = region
    default_region = geo.get("default_region")
    if default_region is not None and default_region not in regions_with_stamps:
        errors.append(("geo.default_region", f"no stamp is in region {default_region!r}"))
    if anonymous == "geo" and default_region is None:
        errors.append(("geo.default_region", "required when routing.anonymous = \"geo\" (where unknown countries go)"))
    errors.extend(check_placement(raw, by_name, sources))
    errors.extend(check_tls(raw, sources))
    return errors


def check_placement(raw: dict, by_name: dict[str, dict], sources: list) -> Errors:
    """[placement]: every way of knowing a request's residency it lists is configured, and
    every residency it names is one that some stamp has (docs/placement.md)."""
    errors: Errors = []
    placement = _dict(raw.get("placement"))
    order = _list(placement.get("residency_from"))
    residencies = {residency_of(s) for s in by_name.values()}
    domains = _dict(placement.get("domain_residency"))
    for key, residency in domains.items():
        path = key_path("placement.domain_residency", key)
        if not is_host_name(key):
            errors.append((path, f"{key!r} is not a domain name"))
        elif isinstance(residency, str) and residency not in residencies:
            errors.append((path, f"no stamp is in residency {residency!r}"))
    default = placement.get("default_residency")
    if isinstance(default, str) and default not in residencies:
        errors.append(("placement.default_residency", f"no stamp is in residency {default!r}"))
    if "domain" in order and not domains:
        errors.append(("placement.residency_from", "lists \"domain\" but placement.domain_residency is empty"))
    if "claim" in order:
        jwt = _dict(raw.get("jwt"))
        if "jwt" not in sources:
            errors.append(("placement.residency_from", "lists \"claim\" but \"jwt\" is not in routing.sources"))
        elif not jwt.get("residency_claim"):
            errors.append(("placement.residency_from", "lists \"claim\" but jwt.residency_claim is not set"))
    if "geo" in order:
        regions = _dict(_dict(raw.get("geo")).get("regions"))
        if not regions:
            errors.append(("placement.residency_from", "lists \"geo\" but geo.regions is empty"))
        for region in regions:
            spans = sorted({str(residency_of(s)) for s in by_name.values() if s.get("region") == region})
            if len(spans) > 1:
                errors.append((key_path("geo.regions", region),
                               f"region {region!r} has stamps in residencies {', '.join(map(repr, spans))}, "
                               "so its countries say no one residency (placement.residency_from lists \"geo\")"))
    return errors


def _merge_plain_pins(table: dict, stamp_names: dict[str, str], pins: dict[str, str]) -> dict:
    """The common case in bulk: every tenant id valid and pinned by no other table, every
    plain pin a known stamp name. Returns what is left for the per-pin loop: the object
    form pins ({stamp, mode}), or the whole table when anything is wrong, so that the loop
    finds and words each problem.

    The checks run in C over whole collections (no Python-level loop over the pins), so a
    million-pin tenants_file validates within the reload budget (the 2 s reload target: docs/control-plane.md).
    """
    try:
        used, odd = set(table.values()), []
    except TypeError:              # object form pins are unhashable: set them aside
        odd = list(compress(table, map(is_not, map(type, table.values()), repeat(str))))
        used = set(compress(table.values(), map(is_, map(type, table.values()), repeat(str))))
    if not used <= stamp_names.keys() or (pins and not pins.keys().isdisjoint(table.keys())) \
            or not all_valid_tenants(table.keys()):
        return table
    # Into an empty dict, update() clones the table's hash table in one go. The object
    # form pins come along and are overwritten in place by the loop; they are not popped,
    # because a dict with deleted entries loses that fast clone for whoever copies it next
    # (validate_document merges slices with update(): 0.35 s more for a million pins).
    # The values are taken as parsed, not mapped to the shared name objects as the loop
    # does: for a million pins the mapping took 0.4-0.65 s of a 2 s budget and left the
    # process RSS where it was (the freed copies stay in Python's allocator arenas).
    pins.update(table)
    rest = {}
    for k in odd:
        rest[k] = table[k]
        pins[k] = None      # not a stamp: the loop sets the name, or reports an error
    return rest


def _loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    return host == "localhost" or host.startswith("127.") or host == "::1"


def check_jwt_details(jwt: dict) -> Errors:
    """[jwt] fields whose rules span more than one value (docs/jwt.md)."""
    errors: Errors = []
    url = jwt.get("jwks_url")
    if isinstance(url, str) and url:
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if scheme.lower() not in ("https", "http") or not host:
            errors.append(("jwt.jwks_url", f"{url!r} is not an http(s) URL"))
        elif scheme.lower() == "http" and not _loopback_host(host):
            # Whoever can alter a plain-HTTP JWKS response can mint tokens for any tenant.
            errors.append(("jwt.jwks_url", "plain http is accepted only for a loopback host; use https"))
    bounds = {}
    for name in ("jwks_min_refresh", "jwks_max_refresh"):
        try:
            bounds[name] = parse_duration(jwt.get(name, 60 if name == "jwks_min_refresh" else 86400))
        except ValueError:
            pass  # the schema reports it
    if len(bounds) == 2 and bounds["jwks_min_refresh"] > bounds["jwks_max_refresh"]:
        errors.append(("jwt.jwks_min_refresh", "is larger than jwks_max_refresh"))
    aud = jwt.get("audience")
    if aud == "" or aud == [] or (isinstance(aud, list) and "" in aud):
        errors.append(("jwt.audience", "an audience is a non-empty string (leave audience out to accept none)"))
    if jwt.get("issuer") == "":
        errors.append(("jwt.issuer", "an issuer is a non-empty string (leave issuer out to accept any)"))
    return errors


def check_pins(table: Any, path: str, stamp_names: dict[str, str],
               pins: dict[str, str], modes: dict[str, str], errors: Errors,
               origin: dict[str, str] | None = None) -> bool:
    """Validate one pin table into `pins` (tenant -> stamp) and `modes` (non-default).

    Plain pins go in bulk (_merge_plain_pins); this loop sees only object form pins, or
    every pin of a table that has something wrong, and words each problem. `stamp_names`
    maps each name to itself so that the pins the loop adds share one string object.
    Returns whether every pin went in bulk, as it was parsed.
    """
    if not isinstance(table, dict):
        errors.append((path, "must be a table (object) of tenant -> stamp"))
        return False
    bad_id = bad_stamp = bad_shape = conflicts = 0
    get_name = stamp_names.get
    rest = _merge_plain_pins(table, stamp_names, pins)
    for tenant, value in rest.items():
        if type(value) is str:
            stamp, mode = value, None
        elif type(value) is dict and isinstance(value.get("stamp"), str) and set(value) <= {"stamp", "mode"} \
                and value.get("mode", "read-write") in PIN_MODES:
            stamp, mode = value["stamp"], value.get("mode")
        else:
            bad_shape += 1
            if bad_shape <= MAX_ERRORS_PER_CLASS:
                errors.append((key_path(path, tenant), "a pin is a stamp name or {stamp = \"NAME\", mode = \"read-write\" | \"read-only\" | \"paused\"}"))
            continue
        if not is_valid_tenant(tenant):
            bad_id += 1
            if bad_id <= MAX_ERRORS_PER_CLASS:
                errors.append((key_path(path, tenant), "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -"))
            continue
        name = get_name(stamp)
        if name is None:
            bad_stamp += 1
            if bad_stamp <= MAX_ERRORS_PER_CLASS:
                errors.append((key_path(path, tenant), f"unknown stamp {stamp!r}"))
            continue
        prior = pins.get(tenant)
        if prior is not None and (prior != name or modes.get(tenant) != (None if mode in (None, "read-write") else mode)):
            conflicts += 1
            if conflicts <= MAX_ERRORS_PER_CLASS:
                where = origin.get("path", "another table") if origin else "another table"
                errors.append((key_path(path, tenant), f"conflicts with the pin in {where} (stamp {prior!r})"))
            continue
        pins[tenant] = name
        if mode is not None and mode != "read-write":
            modes[tenant] = mode
    for count, what in ((bad_shape, "malformed pins"), (bad_id, "invalid tenant ids"),
                        (bad_stamp, "pins to unknown stamps"), (conflicts, "conflicting pins")):
        if count > MAX_ERRORS_PER_CLASS:
            errors.append((path, f"... and {count - MAX_ERRORS_PER_CLASS} more {what}"))
    return not rest


def check_tls(raw: dict, sources: list) -> Errors:
    """[listen] TLS keys that only make sense together, and each stamp's [stamps.tls]."""
    errors: Errors = []
    listen = _dict(raw.get("listen"))
    https, certs = listen.get("https"), _list(listen.get("certificates"))
    if https and not certs:
        errors.append(("listen.certificates", "listen.https needs at least one certificate"))
    if certs and not https:
        errors.append(("listen.https", "certificates are configured but no https listener"))
    if listen.get("redirect_http") is True and not (https and listen.get("http", True)):
        errors.append(("listen.redirect_http", "redirects from listen.http to listen.https: needs both"))
    if https and listen.get("proxy_protocol") is True:
        errors.append(("listen.proxy_protocol", "is not supported together with listen.https"))
    if listen.get("client_ca_file") and not https:
        errors.append(("listen.client_ca_file", "client certificates are asked for on listen.https, which is not set"))
    if "mtls" in sources and not listen.get("client_ca_file"):
        errors.append(("routing.sources", "\"mtls\" is in routing.sources but listen.client_ca_file is not set"))
    for i, stamp in enumerate(_list(raw.get("stamps"))):
        tls = _dict(stamp.get("tls")) if isinstance(stamp, dict) else {}
        path = f"stamps[{i}].tls"
        if bool(tls.get("client_cert_file")) != bool(tls.get("client_key_file")):
            errors.append((path, "client_cert_file and client_key_file go together"))
        if tls.get("verify") is False and tls.get("ca_file"):
            errors.append((f"{path}.ca_file", "verify = false ignores ca_file; remove one of them"))
    return errors
