"""Residency of unpinned tenants (router.core.residency through decide()): placement never
crosses the request's residency, and a request whose residency cannot be served is refused.

No sockets, no event loop, no clock.
"""

from __future__ import annotations

import pytest

from router.core import ALL_HEALTHY, decide
from router.core.decision import HASH, PINNED
from router.core.placement import build_placement
from router.errors import ErrorKind
from tests.core.support import NOW, STAMPS, FakeHealth, Facts, snapshot
from tests.jwt.support import jwt_snapshot, token

ROUTING = """
[routing]
sources = ["subdomain", "header"]
domains = ["eu.example.com", "us.example.com", "example.com"]
"""
PLACEMENT = """
[placement]
residency_from = ["domain", "geo"]
domain_residency = { "eu.example.com" = "eu", "us.example.com" = "us" }

[geo]
regions = { eu = ["DE", "FR"], us = ["US"] }
"""
SNAP = snapshot(routing=ROUTING, extra=PLACEMENT + '\n[tenants]\nacme = "eu-1"\n')
TENANTS = [f"t{i}" for i in range(300)]


def routed(snap=SNAP, health=ALL_HEALTHY, explain=False, **facts):
    return decide(Facts(**facts), snap, health, NOW, explain=explain)


def test_the_domain_says_the_residency_and_placement_stays_in_it():
    eu = {routed(host=f"{t}.eu.example.com").stamp for t in TENANTS}
    us = {routed(host=f"{t}.us.example.com").stamp for t in TENANTS}
    assert eu == {"eu-1", "eu-2"}
    assert us == {"us-1"}          # us-2 is draining: no new placements


def test_placement_within_a_residency_is_its_own_table():
    eu_table = build_placement((("eu-1", 100), ("eu-2", 100)))
    for t in TENANTS:
        d = routed(host=f"{t}.eu.example.com")
        assert (d.stamp, d.reason) == (eu_table.lookup(t), HASH)


def test_the_geo_country_says_the_residency_when_the_domain_does_not():
    assert {routed(host=f"{t}.example.com", geo="US").stamp for t in TENANTS} == {"us-1"}
    assert {routed(tenant_header=t, geo="de").stamp for t in TENANTS} == {"eu-1", "eu-2"}
    # the domain is listed first in residency_from, so it wins over the country
    assert routed(host="newco.eu.example.com", geo="US").stamp in ("eu-1", "eu-2")


def test_no_residency_and_no_default_is_421_residency_unknown():
    d = routed(tenant_header="newco", geo="JP", explain=True)
    assert (d.error, d.status, d.stamp) == (ErrorKind.RESIDENCY_UNKNOWN, 421, None)
    assert "default_residency is not set" in d.message
    assert d.considered[-1] == "residency: none found (domain, geo)"


def test_the_default_residency_covers_the_rest():
    snap = snapshot(routing=ROUTING, extra=PLACEMENT.replace("residency_from", 'default_residency = "us"\nresidency_from'))
    d = routed(snap, tenant_header="newco", explain=True)
    assert d.stamp == "us-1"
    assert "residency: 'us' from placement.default_residency" in d.considered


def test_pins_win_over_residency():
    d = routed(host="acme.us.example.com")
    assert (d.stamp, d.reason) == ("eu-1", PINNED)


def test_a_residency_without_an_active_stamp_is_503_with_retry_after():
    stamps = STAMPS.replace('name = "us-1"\nregion = "us"', 'name = "us-1"\nregion = "us"\nstate = "draining"')
    snap = snapshot(routing=ROUTING, stamps=stamps, extra=PLACEMENT)
    d = routed(snap, host="newco.us.example.com", explain=True)
    assert (d.error, d.status, d.stamp) == (ErrorKind.NO_RESIDENCY_STAMP, 503, None)
    assert d.retry_after == 5
    assert d.message == "no active stamp of residency 'us' takes new tenants"
    assert d.considered[-1] == "hash: no active stamp with weight in residency 'us'"
    # and the other residency is untouched
    assert routed(snap, host="newco.eu.example.com").ok


def test_failover_of_a_placed_stamp_stays_in_its_residency():
    down = FakeHealth(down_stamps={"eu-1", "eu-2"})
    d = routed(health=down, host="newco.eu.example.com")
    assert (d.error, d.stamp) == (ErrorKind.NO_HEALTHY_STAMP, None)


def test_the_explanation_names_where_the_residency_came_from():
    d = routed(host="newco.eu.example.com", explain=True)
    assert d.considered == ("subdomain: tenant 'newco'", "residency: 'eu' from domain 'eu.example.com'",
                            f"hash: stamp {d.stamp!r}")


def test_without_residency_rules_placement_is_over_every_active_stamp():
    snap = snapshot(routing=ROUTING)
    assert snap.residency is None
    assert {routed(snap, tenant_header=t).stamp for t in TENANTS} == {"eu-1", "eu-2", "us-1"}


# The verified token's claim

JWT_ROUTING = """
[routing]
sources = ["jwt", "header"]
anonymous = "reject"

[placement]
residency_from = ["claim"]
"""


@pytest.mark.parametrize("cached", [False, True])
def test_the_residency_claim_of_a_verified_token_places_the_tenant(cached):
    from router.core.jwt_cache import TokenCache
    snap, _ = jwt_snapshot('residency_claim = "org.residency"\n', routing=JWT_ROUTING,
                           cache=TokenCache(100) if cached else None)
    for tenant in TENANTS[:40]:
        for _ in range(2):         # the second time from the cache, when there is one
            tok = token(tid=tenant, org={"residency": "us"})
            d = decide(Facts(authorization=f"Bearer {tok}"), snap, ALL_HEALTHY, NOW)
            assert (d.tenant, d.stamp) == (tenant, "us-1")


def test_a_token_without_the_residency_claim_has_no_residency():
    snap, _ = jwt_snapshot('residency_claim = "res"\n', routing=JWT_ROUTING)
    d = decide(Facts(authorization=f"Bearer {token(tid='newco')}"), snap, ALL_HEALTHY, NOW)
    assert d.error is ErrorKind.RESIDENCY_UNKNOWN


def test_a_residency_claim_that_is_not_a_string_refuses_the_token():
    snap, _ = jwt_snapshot('residency_claim = "res"\n', routing=JWT_ROUTING)
    d = decide(Facts(authorization=f"Bearer {token(tid='newco', res=['eu'])}"), snap, ALL_HEALTHY, NOW)
    assert (d.status, d.error) == (401, ErrorKind.INVALID_TOKEN)
    assert "residency" in d.message


def test_a_claimed_residency_that_no_stamp_has_is_421():
    snap, _ = jwt_snapshot('residency_claim = "res"\n', routing=JWT_ROUTING)
    d = decide(Facts(authorization=f"Bearer {token(tid='newco', res='ap')}"), snap, ALL_HEALTHY, NOW)
    assert (d.status, d.error) == (421, ErrorKind.RESIDENCY_UNKNOWN)
    assert d.message == "no stamp here is in residency 'ap'"


def test_the_claim_is_only_read_from_a_token_that_verifies():
    # The tenant comes from the header; the token (which only the residency needs) is bad.
    snap, _ = jwt_snapshot('residency_claim = "res"\n', routing=JWT_ROUTING.replace('["jwt", "header"]', '["header", "jwt"]'))
    bad = token(tid="newco", res="us", exp=NOW - 3600)
    d = decide(Facts(tenant_header="newco", authorization=f"Bearer {bad}"), snap, ALL_HEALTHY, NOW)
    assert (d.status, d.error) == (401, ErrorKind.INVALID_TOKEN)


def test_turning_residency_on_moves_only_tenants_that_were_outside_their_residency():
    everywhere = build_placement((("eu-1", 100), ("eu-2", 100), ("us-1", 100)))
    eu = build_placement((("eu-1", 100), ("eu-2", 100)))
    for t in (f"n{i}" for i in range(2000)):
        before = everywhere.lookup(t)
        if before != "us-1":
            assert eu.lookup(t) == before, t
