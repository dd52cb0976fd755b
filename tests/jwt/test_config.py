"""Validation of the [jwt] section (router.config.validate, router.config.schema)."""

from __future__ import annotations

import pytest

from tests.config.support import BASE, config_errors, error_at, load_toml

JWT_BASE = BASE.replace('sources = ["subdomain", "header"]', 'sources = ["jwt", "subdomain", "header"]')


def jwt(section: str) -> str:
    return JWT_BASE + "\n[jwt]\n" + section + "\n"


def test_a_jwks_url_config_loads():
    valid = load_toml(jwt('jwks_url = "https://id.example.com/jwks.json"\naudience = ["api", "web"]\nleeway = "10s"'))
    assert valid.config.jwt.audience == ["api", "web"] and valid.config.jwt.leeway == 10.0


@pytest.mark.parametrize("alg", ["none", "None", "HS1", "ES256K", "RS128"])
def test_algorithms_outside_the_supported_set_are_refused(alg):
    errors = config_errors(jwt(f'jwks_url = "https://id.example.com/j"\nalgorithms = ["RS256", "{alg}"]'))
    assert [p for p, _ in errors] == ["jwt.algorithms[1]"], errors


def test_hs_and_public_key_algorithms_never_mix():
    msg = error_at(jwt('secret_file = "s"\nalgorithms = ["HS256", "RS256"]'), "jwt.algorithms")
    assert "key confusion" in msg


def test_a_secret_with_the_default_algorithms_is_refused():
    assert "HS256/384/512" in error_at(jwt('secret_file = "s"'), "jwt.secret_file")


@pytest.mark.parametrize(("url", "ok"), [
    ("https://id.example.com/jwks.json", True), ("http://127.0.0.1:8000/jwks", True), ("http://localhost/j", True),
    ("http://[::1]:9/j", True), ("http://id.example.com/jwks.json", False), ("ftp://id.example.com/j", False),
    ("id.example.com/jwks.json", False), ("https:///jwks", False),
])
def test_jwks_url_is_https_or_loopback_http(url, ok):
    text = jwt(f'jwks_url = "{url}"')
    if ok:
        load_toml(text)
    else:
        assert error_at(text, "jwt.jwks_url")


def test_refresh_bounds_are_ordered():
    text = jwt('jwks_url = "https://id.example.com/j"\njwks_min_refresh = "2h"\njwks_max_refresh = "1h"')
    assert "larger than jwks_max_refresh" in error_at(text, "jwt.jwks_min_refresh")


@pytest.mark.parametrize(("line", "path"), [
    ('audience = ""', "jwt.audience"), ("audience = []", "jwt.audience"), ('issuer = ""', "jwt.issuer"),
    ('claim = ""', "jwt.claim"), ("max_token_bytes = 10", "jwt.max_token_bytes"), ("cache_size = -1", "jwt.cache_size"),
])
def test_empty_or_out_of_range_values_are_refused(line, path):
    assert error_at(jwt('jwks_url = "https://id.example.com/j"\n' + line), path)


def test_jwt_as_a_source_needs_one_key_source():
    assert "none of jwks_url" in error_at(jwt('issuer = "x"'), "jwt")
    assert "only one key source" in error_at(jwt('jwks_url = "https://a/j"\njwks_file = "j.json"'), "jwt")
