"""JWT routing through the real proxy: `stamp-router serve` as a subprocess, keys from a
local JWKS server, one recording backend and one byte-counting sink as the stamps.

A refused request must answer 401 with the Bearer challenge and send not one byte to any
stamp; a valid token must reach its stamp with X-Tenant-ID set to the verified claim, the
client's own X-Tenant-ID replaced.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest

from tests.jwt.jwks_server import JwksServer
from tests.jwt.support import (AUDIENCE, ISSUER, b64, claims, ec_key, handmade, hs256_with, pem_public, public_jwk,
                               rsa_key, token)
from tests.support.router_proc import stamp
from tests.support.servers import wait_until

INVALID = 'Bearer error="invalid_token"'


def live(private=None, alg="RS256", kid="k1", **over) -> str:
    now = time.time()
    return token(private, alg, kid, **{"exp": now + 600, "nbf": now - 10, "iat": now, **over})


@pytest.fixture
def jwks_server(bg):
    server = bg.run(JwksServer(public_jwk(rsa_key("k1"), "k1"), public_jwk(ec_key("e1"), "e1")).start())
    yield server
    bg.run(server.stop())


@pytest.fixture
def router(jwks_server, backends, sink, router_proc):
    (eu1,) = backends("eu-1")
    proc = router_proc({
        "routing": {"sources": ["jwt", "header"], "anonymous": "reject", "unpinned": "reject"},
        "jwt": {"jwks_url": jwks_server.url, "issuer": ISSUER, "audience": AUDIENCE,
                "algorithms": ["RS256", "ES256"]},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [sink.address])],
        "tenants": {"acme": "eu-1", "globex": "eu-2"},
    })
    proc.backend, proc.sink = eu1, sink
    yield proc
    proc.stop()


def refused_cases() -> dict[str, str]:
    now = time.time()
    base = claims(exp=now + 600, nbf=now - 10, iat=now)
    header, _, sig = live().split(".")
    return {
        "alg none": handmade({"alg": "none", "kid": "k1"}, base),
        "alg outside the allow-list": live(alg="RS512"),
        "HS256 with the RSA public key as secret": handmade({"alg": "HS256", "kid": "k1"}, base,
                                                            hs256_with(pem_public(rsa_key("k1")))),
        "tampered payload": f"{header}.{b64(orjson.dumps({**base, 'tid': 'globex'}))}.{sig}",
        "expired": live(exp=now - 3600),
        "not yet valid": live(nbf=now + 3600),
        "wrong issuer": live(iss="https://evil.example.com/"),
        "wrong audience": live(aud="web"),
        "unknown kid": live(rsa_key("intruder"), kid="k9"),
        "oversized": live(pad="p" * 9000),
        "claim not a tenant id": live(tid="acme corp"),
        "signed by another key": live(rsa_key("intruder")),
    }


def test_refused_tokens_answer_401_and_reach_no_stamp(router):
    for case, tok in refused_cases().items():
        for spoof in ({}, {"X-Tenant-ID": "globex"}):
            status, headers, body = router.request("GET", "/x", headers={"Authorization": f"Bearer {tok}", **spoof})
            assert status == 401, (case, status, body)
            assert headers.get("www-authenticate") == INVALID, case
            assert json.loads(body)["kind"] == "invalid_token", case
    assert router.backend.hits() == []
    assert bytes(router.sink.received) == b"" and router.sink.connections == 0


def test_a_basic_credential_is_not_a_token(router):
    status, headers, _ = router.request("GET", "/x", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert router.backend.hits() == [] and bytes(router.sink.received) == b""


def test_a_valid_token_reaches_its_stamp_with_the_verified_tenant(router):
    for tok in (live(), live(ec_key("e1"), "ES256", "e1")):
        status, headers, body = router.request("GET", "/hello", headers={"Authorization": f"Bearer {tok}",
                                                                          "X-Tenant-ID": "globex"})
        assert status == 200, body
        assert headers["x-stamp"] == "eu-1"
    for hit in router.backend.hits():
        tenant_headers = [v for k, v in hit["header_list"] if k.lower() == "x-tenant-id"]
        assert tenant_headers == ["acme"]
        assert "Authorization" in hit["headers"]       # the token itself is passed on
    assert len(router.backend.hits()) == 2
    assert bytes(router.sink.received) == b""


def test_a_new_key_is_used_after_the_unknown_kid_refetch(router, jwks_server):
    jwks_server.publish(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2"))
    tok = live(rsa_key("k2"), kid="k2")
    status, headers, _ = router.request("GET", "/x", headers={"Authorization": f"Bearer {tok}"})
    assert status == 401 and headers.get("www-authenticate") == INVALID

    def accepted():
        return router.request("GET", "/x", headers={"Authorization": f"Bearer {tok}"})[0] == 200

    wait_until(accepted, 10, message="the k2 token to be accepted after the refetch")
    assert jwks_server.requests == 2
    assert router.metric("stamp_router_jwks_unknown_kid_refetches_total") == 1
    ready = router.admin("GET", "/readyz")
    assert ready[0] == 200


def test_an_anonymous_request_does_not_pass_the_clients_tenant_header(jwks_server, backends, router_proc):
    (eu1,) = backends("eu-1")
    proc = router_proc({
        "routing": {"sources": ["jwt"], "anonymous": "stamp:eu-1"},
        "jwt": {"jwks_url": jwks_server.url, "issuer": ISSUER, "audience": AUDIENCE},
        "stamps": [stamp("eu-1", [eu1.address])],
    })
    status, _, _ = proc.request("GET", "/x", headers={"X-Tenant-ID": "victim"})
    assert status == 200
    (hit,) = eu1.hits()
    assert [v for k, v in hit["header_list"] if k.lower() == "x-tenant-id"] == []
