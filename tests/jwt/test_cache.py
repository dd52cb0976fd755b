"""The verified-token cache, on its own and under the jwt source."""

from __future__ import annotations

import pytest

from router.core.jwt_cache import TokenCache, cache_key
from router.core.jwt_keys import keyset_from_jwks
from router.core.sources import TenantRejected
from tests.core.support import NOW
from tests.jwt.support import bearer, jwks, jwt_snapshot, public_jwk, rsa_key, token


def test_cache_is_bounded_and_drops_the_least_recently_used():
    cache = TokenCache(2)
    idents = frozenset({"k"})
    a, b, c = (cache_key(t) for t in "abc")
    cache.put(a, "ta", NOW + 60, "k")
    cache.put(b, "tb", NOW + 60, "k")
    assert cache.get(a, NOW, idents) == "ta"          # a is now the most recent
    cache.put(c, "tc", NOW + 60, "k")
    assert len(cache) == 2
    assert cache.get(b, NOW, idents) is None          # b went first
    assert cache.get(a, NOW, idents) == "ta" and cache.get(c, NOW, idents) == "tc"


def test_an_entry_lives_no_longer_than_its_exp():
    cache = TokenCache(10)
    k = cache_key("t")
    cache.put(k, "acme", NOW + 60, "k")
    assert cache.get(k, NOW + 59.9, frozenset({"k"})) == "acme"
    assert cache.get(k, NOW + 60, frozenset({"k"})) is None
    assert len(cache) == 0


def test_an_entry_whose_key_left_is_a_miss_and_is_dropped():
    cache = TokenCache(10)
    k = cache_key("t")
    cache.put(k, "acme", NOW + 60, "k1#x")
    assert cache.get(k, NOW, frozenset({"k2#y"})) is None
    assert len(cache) == 0 and cache.misses == 1


def test_size_zero_is_not_a_cache():
    with pytest.raises(ValueError):
        TokenCache(0)


def test_a_verified_token_is_answered_from_the_cache():
    cache = TokenCache(10)
    _, src = jwt_snapshot(cache=cache)
    tok = token()
    assert src.resolve(bearer(tok), NOW) == "acme"
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    assert src.resolve(bearer(tok), NOW) == "acme"
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.parametrize("bad", [
    token(rsa_key("intruder")), token(exp=NOW - 100), token(aud="web"), token(tid="no spaces"),
])
def test_an_invalid_token_is_never_cached(bad):
    cache = TokenCache(10)
    _, src = jwt_snapshot(cache=cache)
    for _ in range(2):
        with pytest.raises(TenantRejected):
            src.resolve(bearer(bad), NOW)
    assert len(cache) == 0 and cache.hits == 0


def test_after_exp_the_full_check_decides_leeway_included():
    cache = TokenCache(10)
    _, src = jwt_snapshot(cache=cache)
    tok = token(exp=NOW + 10)
    assert src.resolve(bearer(tok), NOW) == "acme"
    assert src.resolve(bearer(tok), NOW + 20) == "acme"      # past exp, inside 30 s leeway
    assert cache.hits == 0                                  # the entry had already expired
    with pytest.raises(TenantRejected, match="expired"):
        src.resolve(bearer(tok), NOW + 41)


def _cached_then_rotated(*new_jwks):
    """A token verified and cached under k1, then a new key set in place; (source, token, cache)."""
    cache = TokenCache(10)
    _, src = jwt_snapshot(cache=cache)
    tok = token()
    assert src.resolve(bearer(tok), NOW) == "acme"
    src.keys.current = keyset_from_jwks(jwks(*new_jwks), "rotated")
    return src, tok, cache


def test_a_key_that_leaves_the_jwks_stops_validating_tokens_cached_under_it():
    src, tok, cache = _cached_then_rotated(public_jwk(rsa_key("k2"), "k2"))
    with pytest.raises(TenantRejected, match="unknown key id 'k1'"):
        src.resolve(bearer(tok), NOW)
    assert cache.hits == 0


def test_a_kid_reused_for_other_key_material_does_not_keep_old_tokens_valid():
    src, tok, _ = _cached_then_rotated(public_jwk(rsa_key("other"), "k1"))
    with pytest.raises(TenantRejected, match="signature does not verify"):
        src.resolve(bearer(tok), NOW)


def test_other_keys_rotating_leave_cached_tokens_alone():
    src, tok, cache = _cached_then_rotated(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2"))
    assert src.resolve(bearer(tok), NOW) == "acme"
    assert cache.hits == 1


def test_an_oversized_token_is_refused_even_if_it_were_cached():
    cache = TokenCache(10)
    _, src = jwt_snapshot("max_token_bytes = 1024", cache=cache)
    tok = token(pad="p" * 2000)
    cache.put(cache_key(tok), "acme", NOW + 60, next(iter(src.keys.current.idents)))
    with pytest.raises(TenantRejected, match="max_token_bytes"):
        src.resolve(bearer(tok), NOW)
