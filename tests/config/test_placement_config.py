"""[placement]: the ways of knowing a request's residency must be configured, and every
residency named must be one that a stamp has; `check` warns when unpinned placement can
cross residencies (router.config.validate, router.config.warnings)."""

import pytest

from router.config.warnings import config_warnings
from tests.config.support import BASE, error_at, load_toml


def with_placement(lines: str, extra: str = "") -> str:
    return BASE + extra + "\n[placement]\n" + lines + "\n"


@pytest.mark.parametrize(("lines", "path", "message"), [
    ('default_residency = "ap"', "placement.default_residency", "no stamp is in residency 'ap'"),
    ('domain_residency = { "eu.example.com" = "ap" }', "placement.domain_residency['eu.example.com']",
     "no stamp is in residency 'ap'"),
    ('domain_residency = { "eu example" = "eu" }', "placement.domain_residency['eu example']",
     "'eu example' is not a domain name"),
    ('residency_from = ["domain"]', "placement.residency_from",
     'lists "domain" but placement.domain_residency is empty'),
    ('residency_from = ["claim"]', "placement.residency_from",
     'lists "claim" but "jwt" is not in routing.sources'),
    ('residency_from = ["geo"]', "placement.residency_from", 'lists "geo" but geo.regions is empty'),
])
def test_placement_errors_name_the_field(lines, path, message):
    assert error_at(with_placement(lines), path) == message


def test_claim_needs_the_residency_claim():
    text = with_placement('residency_from = ["claim"]').replace(
        'sources = ["subdomain", "header"]', 'sources = ["jwt", "header"]') + '\n[jwt]\njwks_file = "k.json"\n'
    assert error_at(text, "placement.residency_from") == 'lists "claim" but jwt.residency_claim is not set'
    load_toml(text.replace('jwks_file', 'residency_claim = "res"\njwks_file'))


def test_a_geo_region_spanning_residencies_says_no_residency():
    text = with_placement('residency_from = ["geo"]\n\n[geo]\nregions = { eu = ["DE"] }').replace(
        'name = "eu-2"\nregion = "eu"', 'name = "eu-2"\nregion = "eu"\nresidency = "ch"')
    assert "has stamps in residencies 'ch', 'eu'" in error_at(text, "geo.regions.eu")


def test_unknown_way_is_a_schema_error():
    assert "'domain', 'claim' or 'geo'" in error_at(with_placement('residency_from = ["ip"]'),
                                                    "placement.residency_from[0]")


def test_a_valid_placement_section_loads():
    valid = load_toml(with_placement('residency_from = ["domain"]\ndefault_residency = "eu"\n'
                                     'domain_residency = { "us.stamps.example.com" = "us" }'))
    assert valid.config.placement.default_residency == "eu"
    assert config_warnings(valid) == []


def test_check_warns_when_unpinned_placement_crosses_residencies():
    [(path, message)] = config_warnings(load_toml(BASE))
    assert path == "placement"
    assert "every residency ('eu', 'us')" in message


@pytest.mark.parametrize("text", [
    BASE.replace("[routing]\n", '[routing]\nunpinned = "reject"\n'),
    BASE.replace('region = "us"', 'region = "us"\nresidency = "eu"'),
])
def test_no_warning_when_placement_cannot_cross(text):
    assert config_warnings(load_toml(text)) == []
