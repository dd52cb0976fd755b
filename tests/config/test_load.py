"""Loading: TOML and JSON alike, files and their tenants_file, digests and versions."""

import dataclasses
import json
import pathlib
import tomllib

import pydantic
import pytest

from router.config import ConfigError, load_bytes, load_config
from tests.config.support import BASE, load_toml

REPO = pathlib.Path(__file__).resolve().parents[2]

FULL = BASE.replace("[routing]\n", '[routing]\nanonymous = "geo"\nunpinned = "reject"\n') + """
[geo]
default_region = "us"
regions = { eu = ["DE", "FR"], us = ["US"] }

[timeouts]
connect = "1500ms"
idle = "2m"

[limits]
max_body_bytes = "10MiB"

[tenants]
acme = "eu-1"
globex = { stamp = "us-1", mode = "read-only" }
"""


def test_toml_and_json_give_the_same_config():
    from_toml = load_toml(FULL)
    as_json = json.dumps(tomllib.loads(FULL)).encode()
    from_json = load_bytes(as_json, fmt="json", source="test")
    assert from_json.config == from_toml.config
    assert dict(from_json.pins) == dict(from_toml.pins) == {"acme": "eu-1", "globex": "us-1"}
    assert dict(from_json.modes) == dict(from_toml.modes) == {"globex": "read-only"}
    # Parsed values, not the spelling: durations in seconds, sizes in bytes.
    assert from_json.config.timeouts.connect == 1.5
    assert from_json.config.timeouts.idle == 120.0
    assert from_json.config.limits.max_body_bytes == 10 * 1024**2


def test_json_errors_have_the_same_paths_as_toml():
    doc = tomllib.loads(BASE)
    doc["stamps"][1]["failover"] = ["us-1"]
    doc["stamps"][2]["wieght"] = 3
    with pytest.raises(ConfigError) as info:
        load_bytes(json.dumps(doc).encode(), fmt="json", source="test")
    assert [p for p, _ in info.value.errors] == ["stamps[2].wieght", "stamps[1].failover[0]"]


def test_defaults_when_sections_are_absent():
    cfg = load_toml(BASE).config
    assert cfg.listen.http == "0.0.0.0:8080"
    assert cfg.admin.listen == "127.0.0.1:9901"
    assert cfg.routing.unpinned == "hash" and cfg.routing.anonymous == "reject"
    assert cfg.routing.tenant_header == "X-Tenant-ID" and cfg.routing.stamp_header == "X-Stamp"
    assert cfg.jwt is None
    assert cfg.stamps[0].residency_name == "eu" and cfg.stamps[0].state == "active"
    assert cfg.stamps[0].weight == 100


def test_version_defaults_to_digest_and_digest_follows_content():
    a, b = load_toml(BASE), load_toml(BASE)
    assert a.digest == b.digest and a.version == a.digest[:12]
    changed = load_toml(BASE + '[tenants]\nacme = "eu-1"\n')
    assert changed.digest != a.digest
    assert load_toml('version = "2026-01-01.1"\n' + BASE).version == "2026-01-01.1"


def test_tenants_file_content_is_part_of_the_digest(tmp_path):
    pins = tmp_path / "pins.json"
    text = 'tenants_file = "pins.json"\n' + BASE
    pins.write_text(json.dumps({"acme": "eu-1"}))
    first = load_toml(text, str(tmp_path)).digest
    pins.write_text(json.dumps({"acme": "eu-2"}))
    assert load_toml(text, str(tmp_path)).digest != first


def test_load_config_reads_tenants_file_beside_the_config(tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({"initech": {"stamp": "eu-2", "mode": "read-only"}}))
    path = tmp_path / "router.toml"
    path.write_text('tenants_file = "pins.json"\n' + BASE)
    valid = load_config(str(path))
    assert valid.source == str(path)
    assert dict(valid.pins) == {"initech": "eu-2"} and dict(valid.modes) == {"initech": "read-only"}


def test_load_config_picks_json_by_extension(tmp_path):
    path = tmp_path / "router.json"
    path.write_text(json.dumps(tomllib.loads(BASE)))
    assert len(load_config(str(path)).config.stamps) == 3


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "absent.toml"))
    assert "cannot read" in info.value.errors[0][1]


def test_valid_config_is_frozen():
    # pins and modes are plain dicts for lookup speed; nothing may rebind them or change
    # the parsed config in place.
    valid = load_toml(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        valid.pins = {}
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        valid.config.routing.unpinned = "reject"


def test_bulk_and_per_pin_validation_agree(tmp_path):
    # router.config.validate takes plain pins in bulk and sends the rest through a per-pin
    # loop; all three ways through must give the same pins.
    table = {f"tenant-{i}": ("eu-1", "eu-2", "us-1")[i % 3] for i in range(5000)}
    table["tenant-7"] = {"stamp": "eu-2", "mode": "read-only"}
    (tmp_path / "pins.json").write_text(json.dumps(table))
    text = 'tenants_file = "pins.json"\n' + BASE
    split = load_toml(text, str(tmp_path))                               # bulk + loop for one
    # The same pin also in [tenants] overlaps, which sends the whole file through the loop.
    looped = load_toml(text + '[tenants]\n"tenant-1" = "eu-2"\n', str(tmp_path))
    del table["tenant-7"]
    (tmp_path / "pins.json").write_text(json.dumps(table))
    bulk = load_toml(text, str(tmp_path))                                # all in bulk
    assert dict(split.pins) == dict(looped.pins) == {**bulk.pins, "tenant-7": "eu-2"}
    assert dict(split.modes) == dict(looped.modes) == {"tenant-7": "read-only"}
    assert dict(bulk.modes) == {}


def test_errors_among_many_plain_pins_are_still_found(tmp_path):
    table = {f"tenant-{i}": "eu-1" for i in range(5000)}
    table["bad id"] = "eu-1"
    table["lost"] = {"stamp": "nowhere"}
    (tmp_path / "pins.json").write_text(json.dumps(table))
    with pytest.raises(ConfigError) as info:
        load_toml('tenants_file = "pins.json"\n' + BASE, str(tmp_path))
    assert [p for p, _ in info.value.errors] == ["tenants_file['bad id']", "tenants_file.lost"]


@pytest.mark.parametrize("name", ["demo.toml", "example.toml"])
def test_shipped_configs_are_valid(name):
    valid = load_config(str(REPO / "config" / name))
    assert valid.config.stamps
