"""Tenant sources on their own, and their order in the chain (docs/config.md, routing.sources)."""

import pytest

from router.core import ALL_HEALTHY, decide
from router.core.sources import HeaderSource, SubdomainSource, TenantRejected, normalize_host
from router.errors import ErrorKind
from tests.core.support import NOW, Facts, snapshot

SUB = SubdomainSource(("stamps.example.com", "eu.stamps.example.com", "example.net"))


@pytest.mark.parametrize(("host", "tenant"), [
    ("acme.stamps.example.com", "acme"),
    ("acme.stamps.example.com:8443", "acme"),          # port stripped
    ("acme.stamps.example.com.", "acme"),              # trailing dot stripped
    ("acme.stamps.example.com.:443", "acme"),
    ("ACME.Stamps.Example.COM", "acme"),               # Host is case-insensitive
    ("acme.eu.stamps.example.com", "acme"),            # longest domain wins
    ("acme-corp.example.net", "acme-corp"),
    ("a_b.example.net", "a_b"),
])
def test_subdomain_names_a_tenant(host, tenant):
    assert SUB.resolve(Facts(host=host), NOW) == tenant


@pytest.mark.parametrize("host", [
    "stamps.example.com",                 # the domain itself
    "eu.stamps.example.com",              # a configured domain under another one
    "eu.stamps.example.com:80",
    "a.b.stamps.example.com",             # exactly one label
    "x.a.eu.stamps.example.com",
    "acme.example.org",                   # not a configured domain
    "acmestamps.example.com",             # a suffix, not a label boundary
    "[::1]:8080",
    "10.0.0.1:8080",
    "",
])
def test_subdomain_names_no_tenant(host):
    assert SUB.resolve(Facts(host=host or None), NOW) is None


def test_subdomain_with_invalid_label_is_rejected():
    with pytest.raises(TenantRejected) as info:
        SUB.resolve(Facts(host="ac%me.stamps.example.com"), NOW)
    assert info.value.kind is ErrorKind.INVALID_TENANT
    assert "Host subdomain" in info.value.message


@pytest.mark.parametrize(("host", "normal"), [
    ("Example.COM", "example.com"), ("example.com:80", "example.com"), ("example.com.", "example.com"),
    ("[2001:DB8::1]:443", "[2001:db8::1]"), ("[::1]", "[::1]"),
])
def test_normalize_host(host, normal):
    assert normalize_host(host) == normal


def test_header_source():
    src = HeaderSource("X-Tenant-ID")
    assert src.resolve(Facts(tenant_header="acme"), NOW) == "acme"
    assert src.resolve(Facts(tenant_header="Acme.Corp"), NOW) == "Acme.Corp"   # case kept
    assert src.resolve(Facts(), NOW) is None


@pytest.mark.parametrize("value", ["", "acme corp", "x" * 129, "acme;drop", "ümlaut"])
def test_header_source_invalid_value_is_rejected(value):
    with pytest.raises(TenantRejected) as info:
        HeaderSource("X-Tenant-ID").resolve(Facts(tenant_header=value), NOW)
    assert info.value.kind is ErrorKind.INVALID_TENANT
    assert "X-Tenant-ID header" in info.value.message


def test_long_invalid_value_is_shortened_in_the_message():
    with pytest.raises(TenantRejected) as info:
        HeaderSource("X-Tenant-ID").resolve(Facts(tenant_header="!" * 500), NOW)
    assert len(info.value.message) < 200


# The chain: first source that yields wins; an invalid value ends the request.

CHAIN = snapshot()           # sources = ["subdomain", "header"]


def test_first_source_that_yields_wins():
    d = decide(Facts(host="acme.stamps.example.com", tenant_header="globex"), CHAIN, ALL_HEALTHY, NOW)
    assert (d.tenant, d.source) == ("acme", "subdomain")


def test_later_source_used_when_earlier_yields_nothing():
    d = decide(Facts(host="www.example.org", tenant_header="globex"), CHAIN, ALL_HEALTHY, NOW)
    assert (d.tenant, d.source) == ("globex", "header")


def test_order_follows_config():
    snap = snapshot(routing='[routing]\nsources = ["header", "subdomain"]\ndomains = ["stamps.example.com"]\n')
    d = decide(Facts(host="acme.stamps.example.com", tenant_header="globex"), snap, ALL_HEALTHY, NOW)
    assert (d.tenant, d.source) == ("globex", "header")


def test_invalid_value_in_earlier_source_is_400_and_never_falls_through():
    d = decide(Facts(host="bad%id.stamps.example.com", tenant_header="globex"), CHAIN, ALL_HEALTHY, NOW)
    assert d.error is ErrorKind.INVALID_TENANT and d.status == 400
    assert d.tenant is None and d.stamp is None and d.source == "subdomain"


def test_invalid_token_is_401_and_never_falls_through():
    snap = snapshot(routing='[routing]\nsources = ["jwt", "header"]\n')
    d = decide(Facts(authorization="Bearer forged", tenant_header="acme"), snap, ALL_HEALTHY, NOW)
    assert d.status == 401 and d.error is ErrorKind.INVALID_TOKEN
    assert d.www_authenticate == 'Bearer error="invalid_token"'
    ok = decide(Facts(authorization="Bearer good:acme", tenant_header="globex"), snap, ALL_HEALTHY, NOW)
    assert (ok.tenant, ok.source) == ("acme", "jwt")
    absent = decide(Facts(tenant_header="globex"), snap, ALL_HEALTHY, NOW)
    assert (absent.tenant, absent.source) == ("globex", "header")
