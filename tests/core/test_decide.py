"""decide(): stamp choice, anonymous requests, read-only pins, failover (docs/config.md [routing], docs/operations.md)."""

import pytest

from router.core import ALL_HEALTHY, decide
from router.core.decision import DEFAULT, FAILOVER, GEO, HASH, PINNED
from router.errors import ErrorKind
from tests.core.support import NOW, ROUTING, STAMPS, FakeHealth, Facts, snapshot

PINS = """
[tenants]
acme = "eu-1"
globex = "us-2"
initech = { stamp = "eu-2", mode = "read-only" }
umbrella = { stamp = "eu-1", mode = "paused" }
"""
SNAP = snapshot(extra=PINS)


def routed(snap=SNAP, health=ALL_HEALTHY, **facts):
    return decide(Facts(**facts), snap, health, NOW)


def routing(lines: str, sources: str = '["subdomain", "header"]') -> str:
    return f'[routing]\nsources = {sources}\ndomains = ["stamps.example.com"]\n{lines}\n'


# Pinned and hashed tenants

def test_pinned_tenant_goes_to_its_stamp():
    d = routed(tenant_header="acme")
    assert (d.stamp, d.reason, d.tenant, d.source) == ("eu-1", PINNED, "acme", "header")
    assert d.backends == ("10.1.0.10:8080", "10.1.0.11:8080")
    assert d.ok and d.status is None


def test_only_healthy_backends_are_candidates():
    d = routed(health=FakeHealth(down_backends={"10.1.0.10:8080"}), tenant_header="acme")
    assert (d.stamp, d.backends) == ("eu-1", ("10.1.0.11:8080",))


def test_unpinned_tenant_is_placed_by_hash_on_an_active_stamp():
    d = routed(tenant_header="newco")
    assert d.reason == HASH and d.stamp == SNAP.placement.lookup("newco")
    assert d.stamp in ("eu-1", "eu-2", "us-1")


def test_unpinned_reject_is_404():
    snap = snapshot(routing=routing('unpinned = "reject"'), extra=PINS)
    d = routed(snap, tenant_header="newco")
    assert d.error is ErrorKind.UNKNOWN_TENANT and d.status == 404 and d.stamp is None
    assert routed(snap, tenant_header="acme").stamp == "eu-1"


# Draining stamps

def test_draining_stamp_serves_its_pins():
    d = routed(tenant_header="globex")
    assert (d.stamp, d.reason) == ("us-2", PINNED)


def test_draining_stamp_takes_no_hash_placements():
    assert "us-2" not in SNAP.placement.names
    placed = {routed(tenant_header=f"tenant-{i}").stamp for i in range(2000)}
    assert placed == {"eu-1", "eu-2", "us-1"}


def test_no_active_stamp_means_503_for_unpinned():
    stamps = STAMPS.replace('region = "eu"\n', 'region = "eu"\nstate = "draining"\n') \
                   .replace('name = "us-1"\nregion = "us"\n', 'name = "us-1"\nregion = "us"\nstate = "offline"\n')
    snap = snapshot(stamps=stamps, extra=PINS)
    d = routed(snap, tenant_header="newco")
    assert d.error is ErrorKind.NO_HEALTHY_STAMP and d.status == 503 and d.retry_after == 5
    assert routed(snap, tenant_header="acme").stamp == "eu-1"     # pins still served


# Read-only pins

@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_read_only_pin_lets_safe_methods_through(method):
    d = routed(method=method, tenant_header="initech")
    assert (d.stamp, d.mode) == ("eu-2", "read-only") and d.ok


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "CONNECT", "PROPFIND"])
def test_read_only_pin_refuses_unsafe_methods_with_403(method):
    d = routed(method=method, tenant_header="initech")
    assert d.error is ErrorKind.TENANT_READ_ONLY and d.status == 403
    assert d.stamp is None and d.mode == "read-only"
    assert method in d.message


# Paused pins: a hold, decided as a value

@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_paused_pin_holds_every_method(method):
    d = routed(method=method, tenant_header="umbrella")
    assert d.held and d.error is ErrorKind.TENANT_PAUSED and d.status == 503
    assert (d.tenant, d.stamp, d.mode, d.reason) == ("umbrella", None, "paused", PINNED)
    assert d.retry_after == SNAP.retry_after      # what the hold answers if it ends without a release


def test_a_hold_explains_itself():
    out = decide(Facts(tenant_header="umbrella"), SNAP, ALL_HEALTHY, NOW, explain=True).as_dict()
    assert out["outcome"] == "hold" and out["error"] == "tenant_paused"
    assert out["considered"][-1] == "pinned: stamp 'eu-1', paused: held until the pause ends"


def test_only_a_paused_pin_is_a_hold():
    assert not routed(method="POST", tenant_header="initech").held
    assert not routed(tenant_header="acme").held


def test_read_write_pin_takes_any_method():
    assert routed(method="DELETE", tenant_header="acme").ok


# Anonymous requests

def test_anonymous_reject_is_404_without_jwt():
    d = routed()
    assert d.error is ErrorKind.NO_ROUTE and d.status == 404
    assert d.www_authenticate is None


def test_anonymous_reject_is_401_with_jwt_in_sources():
    snap = snapshot(routing=routing('anonymous = "reject"', '["jwt", "header"]'))
    d = routed(snap)
    assert d.error is ErrorKind.UNAUTHENTICATED and d.status == 401
    assert d.www_authenticate == "Bearer"


def test_anonymous_default_stamp():
    snap = snapshot(routing=routing('anonymous = "stamp:us-1"'))
    d = routed(snap)
    assert (d.stamp, d.reason, d.tenant, d.source) == ("us-1", DEFAULT, None, None)


def test_anonymous_default_stamp_fails_over():
    snap = snapshot(routing=routing('anonymous = "stamp:us-1"'))
    d = routed(snap, FakeHealth(down_stamps={"us-1"}))
    assert (d.stamp, d.reason, d.placed, d.placed_by) == ("us-2", FAILOVER, "us-1", DEFAULT)


GEO_SNAP = snapshot(routing=routing('anonymous = "geo"'),
               extra='[geo]\ndefault_region = "us"\nregions = { eu = ["DE", "FR"], us = ["US"] }\n')


@pytest.mark.parametrize(("country", "stamps"), [
    ("DE", {"eu-1", "eu-2"}), ("fr", {"eu-1", "eu-2"}), ("US", {"us-1"}),
    ("JP", {"us-1"}), (None, {"us-1"}), ("", {"us-1"}),
])
def test_geo_maps_country_to_region(country, stamps):
    # us-2 is draining: geo only picks active stamps.
    seen = {routed(GEO_SNAP, geo=country, client=f"198.51.100.{i}").stamp for i in range(64)}
    assert seen == stamps
    assert routed(GEO_SNAP, geo=country).reason == GEO


def test_geo_is_stable_per_client_address():
    clients = [f"203.0.113.{i}" for i in range(200)]
    first = {c: routed(GEO_SNAP, geo="DE", client=c).stamp for c in clients}
    assert first == {c: routed(GEO_SNAP, geo="DE", client=c).stamp for c in clients}
    assert 40 < sum(s == "eu-1" for s in first.values()) < 160      # both stamps used


def test_geo_uses_only_healthy_stamps_and_moves_only_their_clients():
    clients = [f"203.0.113.{i}" for i in range(200)]
    before = {c: routed(GEO_SNAP, geo="DE", client=c).stamp for c in clients}
    down = FakeHealth(down_stamps={"eu-1"})
    after = {c: routed(GEO_SNAP, down, geo="DE", client=c).stamp for c in clients}
    assert set(after.values()) == {"eu-2"}
    assert all(after[c] == "eu-2" for c in clients if before[c] == "eu-2")


def test_geo_with_no_healthy_stamp_is_503():
    d = routed(GEO_SNAP, FakeHealth(down_stamps={"eu-1", "eu-2"}), geo="DE")
    assert d.error is ErrorKind.NO_HEALTHY_STAMP and d.status == 503 and d.retry_after == 5


# Failover

def offline(name: str) -> str:
    return STAMPS.replace(f'name = "{name}"\n', f'name = "{name}"\nstate = "offline"\n')


def test_offline_stamp_fails_over():
    snap = snapshot(stamps=offline("eu-1"), extra=PINS)
    d = routed(snap, tenant_header="acme")
    assert (d.stamp, d.reason, d.placed, d.placed_by) == ("eu-2", FAILOVER, "eu-1", PINNED)
    assert d.backends == ("10.1.1.10:8080",)
    assert d.as_dict()["failover_from"] == "eu-1"


def test_stamp_without_healthy_backends_fails_over():
    down = FakeHealth(down_backends={"10.1.0.10:8080", "10.1.0.11:8080"})
    d = routed(health=down, tenant_header="acme")
    assert (d.stamp, d.reason, d.placed) == ("eu-2", FAILOVER, "eu-1")


def test_failover_takes_the_first_candidate_that_can_serve():
    stamps = STAMPS.replace('failover = ["eu-2"]', 'failover = ["eu-3", "eu-2"]') + \
        '[[stamps]]\nname = "eu-3"\nregion = "eu"\nbackends = ["10.1.3.10:8080"]\n'
    snap = snapshot(stamps=stamps, extra=PINS)
    assert routed(snap, FakeHealth(down_stamps={"eu-1"}), tenant_header="acme").stamp == "eu-3"
    assert routed(snap, FakeHealth(down_stamps={"eu-1", "eu-3"}), tenant_header="acme").stamp == "eu-2"


def test_offline_failover_candidate_is_skipped():
    stamps = STAMPS.replace('state = "draining"', 'state = "offline"')
    snap = snapshot(stamps=stamps, extra=PINS + 'hooli = "us-1"\n')
    d = routed(snap, FakeHealth(down_stamps={"us-1"}), tenant_header="hooli")
    assert d.error is ErrorKind.NO_HEALTHY_STAMP and d.placed == "us-1"


def test_no_failover_stamp_can_serve_is_503_with_retry_after():
    snap = snapshot(routing=routing('retry_after = "30s"'), extra=PINS)
    d = routed(snap, FakeHealth(down_stamps={"eu-1", "eu-2"}), tenant_header="acme")
    assert d.error is ErrorKind.NO_HEALTHY_STAMP and d.status == 503
    assert d.retry_after == 30 and d.placed == "eu-1" and d.stamp is None


def test_hash_placed_tenant_fails_over_from_its_placed_stamp():
    tenant = next(t for t in (f"t{i}" for i in range(1000)) if SNAP.placement.lookup(t) == "us-1")
    d = routed(health=FakeHealth(down_stamps={"us-1"}), tenant_header=tenant)
    assert (d.stamp, d.reason, d.placed, d.placed_by) == ("us-2", FAILOVER, "us-1", HASH)


def test_read_only_pin_is_kept_through_failover():
    d = routed(health=FakeHealth(down_stamps={"eu-2"}), method="POST", tenant_header="initech")
    assert d.error is ErrorKind.TENANT_READ_ONLY
    d = routed(health=FakeHealth(down_stamps={"eu-2"}), tenant_header="initech")
    assert (d.stamp, d.mode) == ("eu-1", "read-only")


# Unknown hosts

def test_strict_hosts_answers_421_to_other_hosts():
    snap = snapshot(routing=routing("strict_hosts = true"), extra=PINS)
    assert routed(snap, host="evil.example.org", tenant_header="acme").status == 421
    assert routed(snap, host="acme.stamps.example.com").stamp == "eu-1"
    assert routed(snap, host="stamps.example.com", tenant_header="acme").stamp == "eu-1"


# Explanations

def test_explain_fills_considered():
    d = decide(Facts(host="www.example.org", tenant_header="acme"), SNAP, FakeHealth(down_stamps={"eu-1"}),
               NOW, explain=True)
    assert d.considered == (
        "subdomain: no tenant",
        "header: tenant 'acme'",
        "pinned: stamp 'eu-1'",
        "stamp 'eu-1' cannot serve (no healthy backend)",
        "failover: stamp 'eu-2'",
    )
    assert d.as_dict()["considered"] == list(d.considered)


def test_explain_covers_rejections_and_geo():
    d = decide(Facts(tenant_header="bad id"), SNAP, ALL_HEALTHY, NOW, explain=True)
    assert d.considered[-1].startswith("header: invalid tenant id")
    g = decide(Facts(geo="JP"), GEO_SNAP, ALL_HEALTHY, NOW, explain=True)
    assert "geo: country 'JP' unknown, default region 'us'" in g.considered
    assert g.considered[-1] == "geo: stamp 'us-1' by client address"


def test_without_explain_nothing_is_collected():
    assert decide(Facts(tenant_header="acme"), SNAP, ALL_HEALTHY, NOW).considered == ()


def test_decision_as_dict_for_a_refusal():
    out = routed(method="POST", tenant_header="initech").as_dict()
    assert out["error"] == "tenant_read_only" and out["status"] == 403 and out["mode"] == "read-only"
    assert out["stamp"] is None and out["tenant"] == "initech"


def test_decide_is_pure():
    facts = Facts(tenant_header="acme")
    assert decide(facts, SNAP, ALL_HEALTHY, NOW) == decide(facts, SNAP, ALL_HEALTHY, NOW + 3600)
    assert facts == Facts(tenant_header="acme")


def test_explain_names_the_step_that_refused():
    read_only = decide(Facts(method="POST", tenant_header="initech"), SNAP, ALL_HEALTHY, NOW, explain=True)
    assert read_only.considered[-1] == "pinned: stamp 'eu-2', read-only: POST refused"
    snap = snapshot(routing=routing('unpinned = "reject"'))
    unknown = decide(Facts(tenant_header="newco"), snap, ALL_HEALTHY, NOW, explain=True)
    assert unknown.considered[-1] == 'not pinned, and routing.unpinned = "reject"'
