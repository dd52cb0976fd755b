"""Key sets from JWKS documents and shared secrets (router.core.jwt_keys)."""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from router.config.schema import JwtAlgorithm
from router.core.jwt_keys import (MAX_CANDIDATES, SUPPORTED_ALGORITHMS, UnusableKey, key_from_jwk, keyset_from_jwks,
                                  keyset_from_secret, thumbprint)
from tests.jwt.support import SECRET, ec_key, ed_key, jwks, pem_public, public_jwk, rsa_key

# RFC 7638 3.1: the example key and its thumbprint.
RFC7638_KEY = {
    "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
         "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0"
         "zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-cs"
         "FCur-kEgU8awapJzKnqDKgw",
}


def test_thumbprint_matches_rfc7638_example():
    assert thumbprint(RFC7638_KEY) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_schema_offers_exactly_the_algorithms_the_core_supports():
    assert set(JwtAlgorithm.__args__) == set(SUPPORTED_ALGORITHMS)


@pytest.mark.parametrize(("jwk", "algorithms"), [
    (lambda: public_jwk(rsa_key("k1"), "a"), {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    (lambda: public_jwk(rsa_key("k1"), "a", alg="PS384"), {"PS384"}),
    (lambda: public_jwk(ec_key("e1"), "a"), {"ES256"}),
    (lambda: public_jwk(ec.generate_private_key(ec.SECP384R1()), "a"), {"ES384"}),
    (lambda: public_jwk(ec.generate_private_key(ec.SECP521R1()), "a"), {"ES512"}),
    (lambda: public_jwk(ed_key("d1"), "a", use="sig", key_ops=["verify"]), {"EdDSA"}),
])
def test_each_key_may_verify_what_its_type_and_curve_allow(jwk, algorithms):
    assert key_from_jwk(jwk()).algorithms == algorithms


@pytest.mark.parametrize(("jwk", "reason"), [
    (lambda: public_jwk(rsa_key("k1"), "a", use="enc"), "use is 'enc'"),
    (lambda: public_jwk(rsa_key("k1"), "a", key_ops=["encrypt"]), "key_ops"),
    (lambda: public_jwk(rsa_key("k1"), "a", alg="ES256"), "does not fit"),
    (lambda: public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "a"), "1024 bits"),
    (lambda: public_jwk(ec.generate_private_key(ec.SECP256K1()), "a"), "curve"),
    (lambda: {"kty": "oct", "k": "c2VjcmV0", "kid": "a"}, "secret_file"),
    (lambda: {"kty": "OKP", "crv": "X25519", "x": "AAAA"}, "signature curve"),
    (lambda: {"kty": "RSA", "n": "AQAB"}, "Not a public or private key"),
    (lambda: {"kty": "XYZ"}, "unsupported kty"),
    (lambda: public_jwk(rsa_key("k1"), 7), "kid is not a string"),
    (lambda: "not an object", "not a JSON object"),
])
def test_unusable_keys_are_refused_with_a_reason(jwk, reason):
    with pytest.raises(UnusableKey, match=reason):
        key_from_jwk(jwk())


def test_a_jwks_keeps_the_usable_keys_and_says_why_others_were_skipped():
    ks = keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k1"), "x", use="enc"),
                               {"kty": "oct", "k": "c2VjcmV0"}), "t")
    assert [k.kid for k in ks.keys] == ["k1"]
    assert len(ks.skipped) == 2 and "kid 'x'" in ks.skipped[0]


@pytest.mark.parametrize(("doc", "reason"), [
    (b"not json", "not valid JSON"), (b"[]", "not a JWKS"), (b'{"keys": {}}', "not a JWKS"),
    (b'{"keys": []}', "empty"), (orjson.dumps({"keys": [{"kty": "oct", "k": "AA"}]}), "no usable signature key"),
])
def test_a_jwks_without_usable_keys_is_refused(doc, reason):
    with pytest.raises(UnusableKey, match=reason):
        keyset_from_jwks(doc, "t")


def test_private_parts_in_a_jwks_still_give_a_public_key():
    jwk = RSAAlgorithm.to_jwk(rsa_key("k1"), as_dict=True)
    jwk.pop("key_ops")
    key = key_from_jwk(jwk)
    assert isinstance(key.key, rsa.RSAPublicKey)


def test_selection_by_kid_and_without():
    ks = keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2"),
                               public_jwk(ec_key("e1"))), "t")
    assert [k.kid for k in ks.select("k2", "RS256")[0]] == ["k2"]
    assert ks.select("k2", "RS256")[1] is True
    assert ks.select("zz", "RS256") == ((), False)
    assert [k.kid for k in ks.select("zz", "ES256")[0]] == [None]        # kidless EC key matches
    assert [k.kid for k in ks.select(None, "RS256")[0]] == ["k1", "k2"]
    assert [k.kid for k in ks.select(None, "ES256")[0]] == [None]


def test_a_token_without_kid_tries_a_bounded_number_of_keys():
    many = jwks(*(public_jwk(rsa_key("k1"), f"k{i}") for i in range(MAX_CANDIDATES + 3)))
    assert len(keyset_from_jwks(many, "t").select(None, "RS256")[0]) == MAX_CANDIDATES


def test_a_shared_secret_must_be_long_enough_for_every_allowed_hs_algorithm():
    assert keyset_from_secret(SECRET, ["HS256", "HS512"], "t").keys[0].algorithms == {"HS256", "HS512"}
    with pytest.raises(UnusableKey, match="HS256 needs at least 32"):
        keyset_from_secret(b"x" * 31, ["HS256"], "t")
    with pytest.raises(UnusableKey, match="HS512 needs at least 64"):
        keyset_from_secret(b"x" * 40, ["HS256", "HS512"], "t")


def test_a_pem_key_is_not_a_shared_secret():
    with pytest.raises(UnusableKey):
        keyset_from_secret(pem_public(rsa_key("k1")) * 2, ["HS256"], "t")


def test_status_never_shows_secret_material_or_its_hash():
    key = keyset_from_secret(SECRET, ["HS256"], "t").keys[0]
    info = key.public_info()
    assert "thumbprint" not in info and SECRET.decode() not in repr(info)
    assert SECRET.decode() not in repr(key) and SECRET.decode() not in key.describe()
