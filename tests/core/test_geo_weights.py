"""Geo routing honours stamp weights: a weight-0 stamp takes anonymous traffic only as the
region's last healthy stamp (docs/config.md, routing.anonymous)."""

from router.core import ALL_HEALTHY, decide
from router.core.decision import GEO
from tests.core.support import NOW, FakeHealth, Facts, snapshot

ROUTING = '[routing]\nsources = ["header"]\nanonymous = "geo"\n'
GEO_SECTION = '[geo]\ndefault_region = "eu"\nregions = { eu = ["DE"] }\n'
STAMPS = """
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.1.0.10:8080"]
weight = 300

[[stamps]]
name = "eu-2"
region = "eu"
backends = ["10.1.1.10:8080"]
weight = 100

[[stamps]]
name = "eu-0"
region = "eu"
backends = ["10.1.2.10:8080"]
weight = 0
"""
SNAP = snapshot(routing=ROUTING, stamps=STAMPS, extra=GEO_SECTION)
CLIENTS = [f"198.51.{i // 250}.{i % 250}" for i in range(4000)]


def stamps_of(health=ALL_HEALTHY):
    return [decide(Facts(geo="DE", client=c), SNAP, health, NOW).stamp for c in CLIENTS]


def test_clients_split_by_weight_and_weight_zero_gets_none():
    seen = stamps_of()
    assert seen.count("eu-0") == 0
    # 3:1 expected; 4,000 clients put the eu-1 share within a few points of 0.75.
    assert 0.70 < seen.count("eu-1") / len(seen) < 0.80


def test_a_weight_zero_stamp_serves_when_it_is_the_last_healthy_one():
    down = FakeHealth(down_stamps={"eu-1", "eu-2"})
    decisions = {decide(Facts(geo="DE", client=c), SNAP, down, NOW) for c in CLIENTS[:50]}
    assert {(d.stamp, d.reason) for d in decisions} == {("eu-0", GEO)}
