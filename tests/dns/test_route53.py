"""The Route 53 provider against moto, plus the Route 53 rules moto does not enforce."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from router.dns.model import make_record
from router.dns.providers.route53 import route53_problems
from tests.dns.conftest import FakeRegistry, make_config, stamp
from tests.dns.support import sync_once, updater

ZONE = "example.test."
STAMPS = [stamp("eu-1", public=["203.0.113.10"], weight=70),
          stamp("eu-2", public=["203.0.113.20"], weight=30),
          stamp("us-1", region="us", public=["198.51.100.10"])]


@pytest.fixture
def route53(monkeypatch):
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        client = boto3.client("route53", region_name="us-east-1")
        zone_id = client.create_hosted_zone(Name=ZONE, CallerReference="stamp-dns-test")["HostedZone"]["Id"]
        yield client, zone_id.rsplit("/", 1)[-1]


def config(zone_id, records=None, **sync):
    provider = {"kind": "route53", "hosted_zone_id": zone_id, "zone": ZONE}
    return make_config(provider, records or [{"name": "api", "type": "A", "region": "eu"}], owner_id="edge-eu-1", **sync)


def sets(client, zone_id, name=f"api.{ZONE}", rtype="A"):
    out = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {(r.get("SetIdentifier"), r.get("Weight"), tuple(v["Value"] for v in r["ResourceRecords"]))
            for r in out if r["Name"] == name and r["Type"] == rtype}


def test_weighted_sets_one_per_stamp_with_its_weight(route53):
    client, zone_id = route53
    records = [{"name": "api", "type": "A", "region": "eu"},
               {"name": "_https._tcp.api", "type": "SRV", "region": "eu", "target": "{stamp}.api", "port": 443}]
    result = sync_once(updater(config(zone_id, records), FakeRegistry(STAMPS)))
    assert result.result == "ok", result.message
    assert sets(client, zone_id) == {("eu-1", 70, ("203.0.113.10",)), ("eu-2", 30, ("203.0.113.20",))}
    assert sets(client, zone_id, f"_https._tcp.api.{ZONE}", "SRV") == {
        (None, None, (f"10 30 443 eu-2.api.{ZONE}", f"10 70 443 eu-1.api.{ZONE}"))}
    assert sets(client, zone_id, f"_stamp-owner-a.api.{ZONE}", "TXT") == {
        (None, None, ('"heritage=stamp-router,owner=edge-eu-1"',))}
    again = sync_once(updater(config(zone_id, records), FakeRegistry(STAMPS)))
    assert again.result == "ok" and again.plan.empty


def test_an_unhealthy_stamp_loses_its_set_and_a_weight_change_rewrites_one(route53):
    client, zone_id = route53
    registry = FakeRegistry(STAMPS)
    cfg = config(zone_id, remove_after=1)
    assert sync_once(updater(cfg, registry)).result == "ok"
    registry.set_health("eu-2", False)
    assert sync_once(updater(cfg, registry)).result == "ok"
    assert sets(client, zone_id) == {("eu-1", 70, ("203.0.113.10",))}
    registry.set_health("eu-2", True)
    registry.stamps[0] = stamp("eu-1", public=["203.0.113.10"], weight=50)
    assert sync_once(updater(cfg, registry)).result == "ok"
    assert sets(client, zone_id) == {("eu-1", 50, ("203.0.113.10",)), ("eu-2", 30, ("203.0.113.20",))}


def test_weights_over_255_are_refused_although_moto_accepts_them(route53):
    client, zone_id = route53
    heavy = [stamp("eu-1", public=["203.0.113.10"], weight=1000), stamp("eu-2", public=["203.0.113.20"])]
    result = sync_once(updater(config(zone_id), FakeRegistry(heavy)))
    assert result.result == "invalid" and result.exit_code == 1
    assert "stamp eu-1 has weight 1000; Route 53 weights are 0..255" in result.message
    assert sets(client, zone_id) == set()
    # moto itself would have taken it: the check has to be the updater's.
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": f"moto.{ZONE}", "Type": "A", "TTL": 30,
                                                  "SetIdentifier": "x", "Weight": 1000,
                                                  "ResourceRecords": [{"Value": "192.0.2.1"}]}}]})


def test_a_stamp_with_two_addresses_is_refused_with_a_clear_message(route53):
    client, zone_id = route53
    double = [stamp("eu-1", public=["203.0.113.10", "203.0.113.11"])]
    result = sync_once(updater(config(zone_id), FakeRegistry(double)))
    assert result.result == "invalid"
    assert "stamp eu-1 has 2 addresses; a weighted set holds one value here" in result.message
    assert sets(client, zone_id) == set()


def test_an_existing_plain_set_is_not_ours_and_stays(route53):
    client, zone_id = route53
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "CREATE", "ResourceRecordSet": {"Name": f"api.{ZONE}", "Type": "A", "TTL": 60,
                                                  "ResourceRecords": [{"Value": "192.0.2.1"}]}}]})
    result = sync_once(updater(config(zone_id), FakeRegistry(STAMPS)))
    assert result.result == "ok" and result.plan.empty
    assert result.plan.skipped[0].reason == "exists without an ownership record; not ours to change"
    assert sets(client, zone_id) == {(None, None, ("192.0.2.1",))}


def test_a_hosted_zone_of_another_name_is_a_clear_error(route53):
    client, zone_id = route53
    cfg = make_config({"kind": "route53", "hosted_zone_id": zone_id, "zone": "other.test."},
                      [{"name": "api", "type": "A"}])
    result = sync_once(updater(cfg, FakeRegistry(STAMPS)))
    assert result.result == "provider_error" and "the hosted zone is example.test., not other.test." in result.message


def test_missing_credentials_are_a_clear_error(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = sync_once(updater(config("Z123"), FakeRegistry(STAMPS)))
    assert result.result == "provider_error" and "no AWS credentials" in result.message


def weighted(set_id, weight=10, values=("192.0.2.1",), ttl=30):
    return make_record(f"api.{ZONE}", "A", ttl, values, set_id=set_id, weight=weight)


@pytest.mark.parametrize("records, problem", [
    ((weighted("a", weight=256),), "stamp a has weight 256; Route 53 weights are 0..255"),
    ((weighted("a", weight=-1),), "stamp a has weight -1"),
    ((weighted("a", values=("192.0.2.1", "192.0.2.2")),), "stamp a has 2 addresses"),
    (tuple(weighted(f"s{i}") for i in range(101)), "101 weighted sets, Route 53 allows 100"),
    ((weighted("a"), make_record(f"api.{ZONE}", "A", 30, ["192.0.2.9"])), "a plain set beside weighted sets"),
    ((weighted("a"), weighted("a", values=("192.0.2.2",))), "SetIdentifier 'a' twice"),
    ((weighted("x" * 129),), "must be 1 to 128 characters"),
    ((weighted("a", ttl=2**31),), "TTL 2147483648 is outside 0..2147483647"),
])
def test_route53_rules(records, problem):
    problems = route53_problems((f"api.{ZONE}", "A"), records)
    assert any(problem in p for p in problems), problems


def test_route53_rules_accept_what_the_updater_writes():
    assert route53_problems((f"api.{ZONE}", "A"), tuple(weighted(f"s{i}", weight=i) for i in range(100))) == []
