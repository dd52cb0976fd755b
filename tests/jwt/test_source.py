"""The jwt source through decide(): every refusal of issue 4 point 7, and what is accepted.

No sockets, no event loop, no clock: `now` is NOW from tests.core.support.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from router.config.schema import Jwt
from router.core import ALL_HEALTHY, decide
from router.core.jwt_keys import KeyRef, keyset_from_jwks
from router.core.jwt_source import JwtSource
from router.core.sources import TenantRejected
from router.errors import ErrorKind
from tests.core.support import NOW, Facts
from tests.jwt.support import (INVALID, ISSUER, b64, bearer, claims, ec_key, ed_key, handmade, hs256_with, jwks,
                               jwt_snapshot, pem_public, public_jwk, rsa_key, token)


def refused(decision, reason: str) -> None:
    assert decision.status == 401, decision
    assert decision.error is ErrorKind.INVALID_TOKEN
    assert decision.www_authenticate == INVALID
    assert decision.stamp is None and decision.backends == ()
    assert reason in decision.message, decision.message


def route(tok: str, jwt_toml: str = "", **kw):
    snap, _ = jwt_snapshot(jwt_toml, **kw)
    return decide(bearer(tok), snap, ALL_HEALTHY, NOW)


# -- accepted


@pytest.mark.parametrize(("private", "alg", "kid"), [
    (rsa_key("k1"), "RS256", "k1"), (ec_key("e1"), "ES256", "e1"), (ed_key("d1"), "EdDSA", "d1"),
])
def test_a_valid_token_routes_by_its_claim(private, alg, kid):
    d = route(token(private, alg, kid))
    assert d.ok and d.tenant == "acme" and d.source == "jwt" and d.stamp is not None


def test_the_verified_claim_wins_over_the_clients_tenant_header():
    snap, _ = jwt_snapshot()
    d = decide(bearer(token(), tenant_header="victim"), snap, ALL_HEALTHY, NOW)
    assert d.ok and d.tenant == "acme" and d.source == "jwt"


def test_pss_is_accepted_when_allowed():
    assert route(token(alg="PS256"), 'algorithms = ["PS256"]').tenant == "acme"


# -- point 7, one by one


def test_alg_none_is_refused():
    tok = handmade({"alg": "none", "kid": "k1"}, claims())
    refused(route(tok), "alg none")
    refused(route(handmade({"alg": "None"}, claims())), "alg none")


def test_an_algorithm_outside_the_allow_list_is_refused():
    refused(route(token(alg="RS512")), "algorithm 'RS512' is not allowed")


def test_hs256_signed_with_the_rsa_public_key_is_refused():
    tok = handmade({"alg": "HS256", "kid": "k1"}, claims(), hs256_with(pem_public(rsa_key("k1"))))
    refused(route(tok), "algorithm 'HS256' is not allowed")


def test_key_confusion_is_refused_even_if_the_allow_list_were_wrong():
    # Validation never lets HS* and public keys mix; the key's own algorithm set is the
    # second lock: an RSA key never verifies an HS256 token.
    cfg = Jwt(algorithms=["RS256", "HS256"], jwks_file="x", issuer=ISSUER, audience="api")
    src = JwtSource(cfg, KeyRef(keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1")), "t")))
    pem = pem_public(rsa_key("k1"))
    for secret in (pem, pem.strip(), base64.b64decode(b"".join(pem.splitlines()[1:-1]))):
        tok = handmade({"alg": "HS256", "kid": "k1"}, claims(), hs256_with(secret))
        with pytest.raises(TenantRejected, match="no key for algorithm HS256"):
            src.resolve(bearer(tok), NOW)


def test_a_tampered_payload_is_refused():
    header, _, sig = token().split(".")
    forged = f"{header}.{b64(orjson.dumps(claims(tid='victim')))}.{sig}"
    refused(route(forged), "signature does not verify")


def test_a_token_signed_by_another_key_with_our_kid_is_refused():
    refused(route(token(rsa_key("intruder"), kid="k1")), "signature does not verify")


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("exp", NOW - 31, "expired"), ("exp", NOW - 29, None), ("exp", NOW - 3600, "expired"),
    ("nbf", NOW + 31, "not yet valid"), ("nbf", NOW + 29, None), ("nbf", NOW + 3600, "not yet valid"),
])
def test_exp_and_nbf_with_leeway(claim, value, reason):
    d = route(token(**{claim: value}))
    if reason is None:
        assert d.tenant == "acme"
    else:
        refused(d, reason)


def test_a_token_without_exp_is_refused():
    refused(route(token(exp=...)), "no exp")


def test_leeway_is_configurable():
    refused(route(token(exp=NOW - 5), 'leeway = "2s"'), "expired")


@pytest.mark.parametrize("iss", ["https://evil.example.com/", "https://id.example.com", ..., 42])
def test_a_wrong_or_missing_issuer_is_refused(iss):
    refused(route(token(iss=iss)), "issuer")


@pytest.mark.parametrize("aud", ["web", ["web", "admin"], ...])
def test_a_wrong_or_missing_audience_is_refused(aud):
    d = route(token(aud=aud))
    refused(d, "no aud" if aud is ... else "audience")


def test_audience_lists_on_both_sides():
    assert route(token(aud=["web", "api"])).tenant == "acme"
    assert route(token(aud="billing"), 'audience = ["api", "billing"]').tenant == "acme"
    refused(route(token(aud=["web"]), 'audience = ["api", "billing"]'), "audience")
    refused(route(token(aud=[1, 2])), "neither a string nor a list")


def test_an_audience_nobody_configured_is_refused():
    # RFC 7519 4.1.3: a recipient that is not named in a present aud must refuse.
    snap, _ = jwt_snapshot(routing='[routing]\nsources = ["jwt"]\n', jwt_toml='issuer = "https://id.example.com/"\n'
                           'jwks_file = "x.json"\naudience = "api"')
    assert decide(bearer(token()), snap, ALL_HEALTHY, NOW).ok
    cfg = Jwt(algorithms=["RS256"], jwks_file="x", issuer=ISSUER)
    src = JwtSource(cfg, KeyRef(keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1")), "t")))
    with pytest.raises(TenantRejected, match="jwt.audience is not set"):
        src.resolve(bearer(token()), NOW)
    assert src.resolve(bearer(token(aud=...)), NOW) == "acme"


def test_an_unknown_kid_is_refused_then_valid_after_rotation():
    calls = []
    snap, src = jwt_snapshot(on_unknown_kid=calls.append)
    tok = token(rsa_key("k2"), kid="k2")
    refused(decide(bearer(tok), snap, ALL_HEALTHY, NOW), "unknown key id 'k2'")
    assert calls == ["k2"]
    # What the runtime's refetch does: swap in the new key set; the snapshot is the same.
    src.keys.current = keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2")), "rotated")
    assert decide(bearer(tok), snap, ALL_HEALTHY, NOW).tenant == "acme"
    assert calls == ["k2"]


def test_a_known_kid_with_a_bad_signature_does_not_ask_for_a_refetch():
    calls = []
    snap, _ = jwt_snapshot(on_unknown_kid=calls.append)
    refused(decide(bearer(token(rsa_key("intruder"))), snap, ALL_HEALTHY, NOW), "signature")
    assert calls == []


def test_basic_is_not_a_token_and_the_next_source_is_asked():
    snap, _ = jwt_snapshot()
    d = decide(Facts(authorization="Basic dXNlcjpwYXNz", tenant_header="globex"), snap, ALL_HEALTHY, NOW)
    assert d.ok and d.tenant == "globex" and d.source == "header"


def test_basic_alone_is_unauthenticated_not_invalid_token():
    snap, _ = jwt_snapshot(routing='[routing]\nsources = ["jwt"]\nanonymous = "reject"\n')
    d = decide(Facts(authorization="Basic dXNlcjpwYXNz"), snap, ALL_HEALTHY, NOW)
    assert d.status == 401 and d.error is ErrorKind.UNAUTHENTICATED and d.www_authenticate == "Bearer"
    assert d.stamp is None


def test_an_oversized_token_is_refused_before_parsing():
    refused(route("x" * 8193), "more than max_token_bytes (8192)")
    refused(route(token(pad="p" * 300), "max_token_bytes = 256"), "more than max_token_bytes (256)")


@pytest.mark.parametrize(("value", "reason"), [
    ("acme corp", "not a valid tenant id"), ("", "not a valid tenant id"), ("x" * 129, "not a valid tenant id"),
    ("ac/me", "not a valid tenant id"), (["acme"], "not a string"), (True, "not a string"), (..., "no claim"),
    ({"id": "acme"}, "not a string"),
])
def test_a_claim_that_is_not_a_valid_tenant_id_is_refused(value, reason):
    refused(route(token(tid=value)), reason)


# -- a present but invalid token never falls through


@pytest.mark.parametrize("auth", [
    "Bearer", "Bearer ", "Bearer not-a-jwt", "bearer a.b", "Bearer a.b.c.d.e", "Bearer ....",
    "Bearer eyJhbGciOiJSUzI1NiJ9.e30=.c2ln", "Bearer ünïcode.a.b", "Bearer\ttab.b.c", "BEARER x.y.z",
])
def test_malformed_bearer_credentials_end_the_request(auth):
    snap, _ = jwt_snapshot()
    refused(decide(Facts(authorization=auth, tenant_header="globex"), snap, ALL_HEALTHY, NOW), "")


def test_no_authorization_header_asks_the_next_source():
    snap, _ = jwt_snapshot()
    d = decide(Facts(tenant_header="globex"), snap, ALL_HEALTHY, NOW)
    assert d.ok and d.source == "header"


# -- header fields we refuse or ignore


def test_crit_and_unencoded_payloads_are_refused():
    sign = lambda msg: rsa_key("k1").sign(msg, *_pkcs1())  # noqa: E731
    refused(route(handmade({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}, claims(), sign)), "crit")
    refused(route(handmade({"alg": "RS256", "kid": "k1", "b64": False}, claims(), sign)), "b64")


def test_jku_and_embedded_jwk_are_ignored():
    intruder = rsa_key("intruder")
    tok = token(intruder, kid="k9")
    header = {"alg": "RS256", "kid": "k9", "jku": "https://evil.example.com/jwks.json",
              "jwk": public_jwk(intruder, "k9")}
    forged = handmade(header, claims(), lambda msg: intruder.sign(msg, *_pkcs1()))
    refused(route(tok), "unknown key id")
    refused(route(forged), "unknown key id")


def test_a_token_whose_alg_does_not_fit_the_kid_s_key_is_refused():
    # ES256 token naming the RSA key's kid: the RSA key cannot verify ES256.
    refused(route(token(ec_key("e1"), "ES256", kid="k1")), "no key for algorithm ES256 with kid 'k1'")


def test_jwe_is_refused_with_its_own_reason():
    refused(route("a.b.c.d.e"), "encrypted tokens")


def _pkcs1():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return padding.PKCS1v15(), hashes.SHA256()


# -- keys without kid, the claim path, HS256


def test_keys_without_kid_match_by_algorithm_and_key_type():
    keys = KeyRef(keyset_from_jwks(jwks(public_jwk(ec_key("e1")), public_jwk(rsa_key("k1"))), "t"))
    assert route(token(kid=None), keys=keys).tenant == "acme"
    assert route(token(ec_key("e1"), "ES256", kid=None), keys=keys).tenant == "acme"
    # A token with a kid still finds a key that was published without one.
    assert route(token(kid="any"), keys=keys).tenant == "acme"
    refused(route(token(rsa_key("intruder"), kid=None), keys=keys), "signature does not verify")


def test_a_token_without_kid_tries_keys_with_one_too():
    assert route(token(kid=None)).tenant == "acme"


def test_dotted_claim_path():
    tok = token(tid=..., org={"id": "acme-corp", "name": "Acme"})
    assert route(tok, 'claim = "org.id"').tenant == "acme-corp"
    refused(route(token(tid=..., org="acme"), 'claim = "org.id"'), "no claim 'org.id'")


def test_a_literal_claim_name_with_dots_is_found_first():
    ns = "https://example.com/tenant"
    assert route(token(tid=..., **{ns: "acme-ns"}), f'claim = "{ns}"').tenant == "acme-ns"


def test_an_integer_claim_is_its_decimal_string():
    assert route(token(tid=4711)).tenant == "4711"


def test_hs256_with_a_shared_secret():
    from tests.jwt.support import SECRET
    toml = 'secret_file = "secret"\nalgorithms = ["HS256"]'
    assert route(token(SECRET, "HS256", kid=None), toml).tenant == "acme"
    refused(route(token(b"t" * 64, "HS256", kid=None), toml), "signature does not verify")
    refused(route(token(SECRET, "HS512", kid=None), toml), "not allowed")


# -- explanations


def test_explain_names_the_key_the_claim_and_its_value():
    snap, _ = jwt_snapshot('claim = "org.id"')
    d = decide(bearer(token(tid=..., org={"id": "acme"})), snap, ALL_HEALTHY, NOW, explain=True)
    text = "\n".join(d.considered)
    assert "verified with kid 'k1' (RSA 2048 bits" in text
    assert "claim 'org.id' = 'acme'" in text
    assert "jwt: tenant 'acme'" in text


def test_explain_says_why_a_token_was_refused():
    snap, _ = jwt_snapshot()
    d = decide(bearer(token(rsa_key("k2"), kid="k2")), snap, ALL_HEALTHY, NOW, explain=True)
    assert d.status == 401
    assert d.considered[-1] == "jwt: invalid token: unknown key id 'k2'"
    assert any("key ids held: 'd1', 'e1', 'k1'" in s for s in d.considered)


def test_explain_skips_a_non_bearer_scheme_with_a_reason():
    snap, _ = jwt_snapshot()
    d = decide(Facts(authorization="Basic abc", tenant_header="globex"), snap, ALL_HEALTHY, NOW, explain=True)
    assert "jwt: Authorization scheme 'Basic' is not Bearer: no token for this source" in d.considered
