"""Other JOSE implementations: jwcrypto's keys and tokens are accepted, and on mangled
tokens we agree with pyjwt's own decoder about what verifies (a differential test)."""

from __future__ import annotations

import time

import jwt as pyjwt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jws as jwc_jws

from router.config.schema import Jwt
from router.core.jwt_keys import KeyRef, keyset_from_jwks
from router.core.jwt_source import JwtSource
from router.core.sources import TenantRejected
from router.errors import ErrorKind
from tests.core.support import Facts
from tests.jwt.support import AUDIENCE, ISSUER, b64, bearer, jwks, public_jwk, rsa_key, token

NOW = time.time()
ALL_PUBLIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
JWCRYPTO_KEYS = {
    "RS256": dict(kty="RSA", size=2048), "PS384": dict(kty="RSA", size=3072),
    "ES256": dict(kty="EC", crv="P-256"), "ES384": dict(kty="EC", crv="P-384"), "ES512": dict(kty="EC", crv="P-521"),
    "EdDSA": dict(kty="OKP", crv="Ed25519"),
}


@pytest.fixture(scope="module")
def jwcrypto_keys():
    return {alg: jwc_jwk.JWK.generate(kid=f"jwc-{alg}", **params) for alg, params in JWCRYPTO_KEYS.items()}


@pytest.fixture(scope="module")
def source(jwcrypto_keys):
    keyset = jwc_jwk.JWKSet()
    for key in jwcrypto_keys.values():
        keyset.add(key)
    document = keyset.export(private_keys=False).encode()
    cfg = Jwt(algorithms=ALL_PUBLIC, jwks_file="x", issuer=ISSUER, audience=AUDIENCE)
    return JwtSource(cfg, KeyRef(keyset_from_jwks(document, "jwcrypto JWKS")))


def jwcrypto_token(key, alg: str, **over) -> str:
    claims = {"tid": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 600, "nbf": int(NOW) - 5}
    claims.update(over)
    signed = jwc_jws.JWS(orjson.dumps(claims))
    signed.add_signature(key, protected=orjson.dumps({"alg": alg, "kid": key.get("kid"), "typ": "JWT"}).decode())
    return signed.serialize(compact=True)


@pytest.mark.parametrize("alg", sorted(JWCRYPTO_KEYS))
def test_tokens_signed_by_jwcrypto_are_accepted(source, jwcrypto_keys, alg):
    assert source.resolve(bearer(jwcrypto_token(jwcrypto_keys[alg], alg)), NOW) == "acme"


def test_jwcrypto_tokens_are_refused_for_the_same_reasons(source, jwcrypto_keys):
    key = jwcrypto_keys["RS256"]
    with pytest.raises(TenantRejected, match="expired"):
        source.resolve(bearer(jwcrypto_token(key, "RS256", exp=int(NOW) - 3600)), NOW)
    with pytest.raises(TenantRejected, match="issuer"):
        source.resolve(bearer(jwcrypto_token(key, "RS256", iss="https://other/")), NOW)
    # Signed by the P-256 key but naming the RSA key's kid.
    forged = jwcrypto_token(jwcrypto_keys["ES256"], "ES256")
    header = orjson.dumps({"alg": "ES256", "kid": "jwc-RS256", "typ": "JWT"})
    forged = b64(header) + forged[forged.index("."):]
    with pytest.raises(TenantRejected, match="no key for algorithm ES256 with kid 'jwc-RS256'"):
        source.resolve(bearer(forged), NOW)


# -- differential: mangle a valid token and compare with pyjwt.decode

PYJWT_KEY = rsa_key("k1").public_key()
CFG = Jwt(algorithms=["RS256"], jwks_file="x", issuer=ISSUER, audience=AUDIENCE, leeway=30)
OURS = JwtSource(CFG, KeyRef(keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1")), "t")))
# pyjwt reads the real clock; a year keeps the token valid however long the suite runs.
VALID = token(exp=NOW + 365 * 86400, nbf=NOW - 10, iat=NOW - 10)
CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "


def pyjwt_accepts(tok: str) -> bool:
    try:
        pyjwt.decode(tok, PYJWT_KEY, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30,
                     options={"require": ["exp"]})
    except pyjwt.PyJWTError:
        return False
    return True


def ours_accepts(tok: str) -> bool:
    try:
        return OURS.resolve(bearer(tok), NOW) == "acme"
    except TenantRejected as exc:
        assert exc.kind is ErrorKind.INVALID_TOKEN
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                                st.integers(min_value=0, max_value=len(VALID)), st.sampled_from(CHARS)),
                      min_size=1, max_size=3))
def test_we_accept_a_mangled_token_exactly_when_pyjwt_does(edits):
    tok = VALID
    for op, pos, ch in edits:
        pos = min(pos, len(tok) - 1)
        if op == "replace":
            tok = tok[:pos] + ch + tok[pos + 1:]
        elif op == "insert":
            tok = tok[:pos] + ch + tok[pos:]
        else:
            tok = tok[:pos] + tok[pos + 1:]
    tok = tok.strip(" ")
    if not tok:
        return
    assert ours_accepts(tok) == pyjwt_accepts(tok), tok


def test_the_unmangled_token_is_accepted_by_both():
    assert ours_accepts(VALID) and pyjwt_accepts(VALID)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_authorization_value_yields_a_tenant_nothing_or_a_401(value):
    try:
        result = OURS.resolve(Facts(authorization=value), NOW)
    except TenantRejected as exc:
        assert exc.kind is ErrorKind.INVALID_TOKEN and exc.www_authenticate == 'Bearer error="invalid_token"'
    else:
        assert result is None or result == "acme"
