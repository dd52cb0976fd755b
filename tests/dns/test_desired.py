"""Desired record sets from stamps: region, family, weight, health, never empty. Pure."""

from __future__ import annotations

from router.dns.config import RecordEntry
from router.dns.desired import desired_sets
from router.dns.model import Member
from tests.dns.conftest import stamp

ZONE = "example.test."
STAMPS = [
    stamp("eu-1", public=["203.0.113.10", "2001:DB8:0:0::10"], weight=70),
    stamp("eu-2", public=["203.0.113.20", "203.0.113.21", "lb.example.net"], weight=30),
    stamp("eu-3", public=["203.0.113.30"], weight=0),
    stamp("eu-4", public=["203.0.113.40"], state="offline"),
    stamp("us-1", region="us", public=["198.51.100.10"]),
]
ALL = frozenset(s.name for s in STAMPS)


def entry(**kw):
    return RecordEntry(**{"name": "api", "type": "A", **kw})


def members(result, name="api.example.test.", rtype="A"):
    return result.sets[(name, rtype)].members


def test_a_takes_the_regions_ipv4_addresses_with_weights_split_over_addresses():
    got = desired_sets([entry(region="eu")], STAMPS, ALL - {"eu-4"}, zone=ZONE, ttl=30)
    # eu-1 has one IPv4 address, eu-2 two: weights scaled by lcm(1, 2) = 2, then split.
    assert members(got) == (Member("eu-1", "203.0.113.10", 140), Member("eu-2", "203.0.113.20", 30),
                            Member("eu-2", "203.0.113.21", 30))
    assert got.sets[("api.example.test.", "A")].ttl == 30


def test_aaaa_takes_ipv6_in_canonical_form_and_no_region_means_every_region():
    got = desired_sets([entry(type="AAAA", ttl=5)], STAMPS, ALL, zone=ZONE, ttl=30)
    assert members(got, rtype="AAAA") == (Member("eu-1", "2001:db8::10", 70),)
    assert got.sets[("api.example.test.", "AAAA")].ttl == 5


def test_srv_carries_the_stamp_weights_and_targets():
    srv = entry(name="_https._tcp.api", type="SRV", region="eu", target="{stamp}.stamps", port=443, priority=5)
    got = desired_sets([srv], STAMPS, frozenset({"eu-1", "eu-2"}), zone=ZONE, ttl=30)
    assert [m.value for m in members(got, "_https._tcp.api.example.test.", "SRV")] == [
        "5 70 443 eu-1.stamps.example.test.", "5 30 443 eu-2.stamps.example.test."]


def test_weight_zero_is_left_out():
    got = desired_sets([entry(region="eu")], STAMPS, ALL, zone=ZONE, ttl=30)
    assert "eu-3" not in {m.stamp for m in members(got)}


def test_unpublished_stamps_are_left_out():
    got = desired_sets([entry(region="eu")], STAMPS, frozenset({"eu-1"}), zone=ZONE, ttl=30)
    assert {m.stamp for m in members(got)} == {"eu-1"}
    assert got.notes == ()


def test_never_an_empty_set_when_every_stamp_is_unhealthy():
    got = desired_sets([entry(region="eu")], STAMPS, frozenset({"us-1"}), zone=ZONE, ttl=30)
    assert {m.stamp for m in members(got)} == {"eu-1", "eu-2", "eu-4"}
    assert got.notes == ((("api.example.test.", "A"), "no stamp is healthy; keeping all 3 rather than an empty set"),)


def test_a_name_without_any_candidate_is_held_not_emptied():
    got = desired_sets([entry(region="ap"), entry(name="v6", type="AAAA", region="us")], STAMPS, ALL,
                       zone=ZONE, ttl=30)
    assert got.sets == {}
    assert got.held == frozenset({("api.example.test.", "A"), ("v6.example.test.", "AAAA")})
    assert got.configured == got.held
