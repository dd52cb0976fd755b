"""The DNS config: every error with its path, all at once; paths relative to the file."""

from __future__ import annotations

import os

import pytest

from router.dns.config import load_dns_config, parse_dns_config
from router.dns.providers import make_provider
from router.errors import ConfigError

GOOD = {
    "source": {"stamps_url": "http://127.0.0.1:9901/stamps", "timeout": "2s"},
    "provider": {"kind": "rfc2136", "server": "127.0.0.1:5353", "zone": "Example.COM",
                 "tsig_key_file": "updater.key"},
    "sync": {"interval": "10s", "policy": "sync", "owner_id": "edge-eu-1", "max_change_fraction": 0.3,
             "ttl": 30, "remove_after": 3},
    "metrics": {"listen": "127.0.0.1:9902"},
    "records": [{"name": "api", "type": "A", "region": "eu"},
                {"name": "_https._tcp.api", "type": "SRV", "target": "{stamp}.api", "port": 443}],
}


def errors_of(doc) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_dns_config(doc, "/etc/stamp")
    return dict(info.value.errors)


def with_(**sections):
    doc = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in GOOD.items()}
    for key, value in sections.items():
        doc[key] = value
    return doc


def test_a_good_config_loads_with_defaults_and_normalised_values():
    cfg = parse_dns_config(GOOD, "/etc/stamp")
    assert cfg.zone == "example.com."
    assert cfg.sync.interval == 10.0 and cfg.source.timeout == 2.0
    assert cfg.provider.tsig_key_file == "/etc/stamp/updater.key"
    assert cfg.sync.min_owned_records == 10 and cfg.sync.state_file is None
    assert cfg.records[1].priority == 10


def test_the_example_config_in_the_repository_validates():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "config", "dns-example.toml")
    cfg = load_dns_config(path)
    assert cfg.provider.kind == "rfc2136" and cfg.records


def test_every_error_is_reported_at_once_with_its_path():
    doc = with_(source={"timeout": "soon"},
                sync={"owner_id": "bad owner", "policy": "yolo", "max_change_fraction": 2, "interval": "1 fortnight"},
                records=[{"name": "api", "type": "MX"}, {"name": "x", "type": "A", "colour": "red"}])
    errors = errors_of(doc)
    assert set(errors) == {"source", "source.timeout", "sync.owner_id", "sync.policy", "sync.max_change_fraction",
                           "sync.interval", "records[0].type", "records[1].colour"}
    assert errors["records[1].colour"] == "unknown key"
    assert "exactly one of stamps_url and config" in errors["source"]
    assert "invalid duration" in errors["sync.interval"]


def test_provider_errors_name_the_field_not_the_union_tag():
    errors = errors_of(with_(provider={"kind": "rfc2136", "zone": "example.com.", "server": "localhost"}))
    assert set(errors) == {"provider.server", "provider.tsig_key_file"}
    assert "host:port" in errors["provider.server"]
    assert errors_of(with_(provider={"kind": "bind9"})) == {
        "provider.kind": "kind must be one of rfc2136, powerdns, route53"}
    assert errors_of(with_(provider={"zone": "example.com."})) == {
        "provider.kind": "missing kind (rfc2136, powerdns, route53)"}


def test_record_entries_are_checked_against_the_zone_and_each_other():
    errors = errors_of(with_(records=[
        {"name": "api.other.org.", "type": "A"},
        {"name": "api", "type": "A"},
        {"name": "api", "type": "A"},
        {"name": "_srv", "type": "SRV", "port": 443, "target": "fixed.example.com."},
        {"name": "plain", "type": "A", "port": 80},
        {"name": "_stamp-owner-a.api", "type": "A"},
    ]))
    assert errors == {
        "records[0].name": "api.other.org. is outside the zone example.com.",
        "records[2]": "api.example.com. A is already records[1]",
        "records[3]": "an SRV target needs {stamp}, so each stamp's weight has its own target",
        "records[4]": "target and port are for SRV entries, not A",
        "records[5].name": "names starting _stamp-owner- hold ownership records",
    }


def test_metrics_take_one_of_listen_and_textfile():
    errors = errors_of(with_(metrics={"listen": "127.0.0.1:9902", "textfile": "/tmp/x.prom"}))
    assert errors == {"metrics": "give listen or textfile, not both"}


def test_a_file_that_is_not_toml_or_not_there_is_a_clear_error(tmp_path):
    bad = tmp_path / "dns.toml"
    bad.write_text("[sync\nowner_id = 1")
    with pytest.raises(ConfigError, match="cannot parse TOML"):
        load_dns_config(str(bad))
    with pytest.raises(ConfigError, match="cannot read .*missing.toml: No such file"):
        load_dns_config(str(tmp_path / "missing.toml"))


def test_providers_refuse_record_types_they_do_not_support(monkeypatch):
    from router.dns.providers.powerdns import PowerDnsProvider
    monkeypatch.setattr(PowerDnsProvider, "SUPPORTS", frozenset({"A", "AAAA"}))
    cfg = parse_dns_config(with_(provider={"kind": "powerdns", "api_url": "http://127.0.0.1:8081",
                                           "api_key_file": "k", "zone": "example.com."}))
    with pytest.raises(ConfigError) as info:
        make_provider(cfg)
    assert info.value.errors == [("records[1].type", "provider powerdns does not support SRV records")]


def test_building_a_provider_does_no_io(tmp_path):
    # The key file does not exist: construction must not notice; the first read will.
    cfg = parse_dns_config(with_(provider={"kind": "rfc2136", "server": "127.0.0.1:1", "zone": "example.com.",
                                           "tsig_key_file": str(tmp_path / "absent.key")}))
    provider = make_provider(cfg)
    assert provider.describe() == "rfc2136 127.0.0.1:1 zone example.com."
