"""Shared by the jwt tests: keys (made once per run), JWKS documents, tokens, snapshots."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

import jwt as pyjwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from router.config import load_bytes
from router.core import build_snapshot
from router.core.jwt_cache import TokenCache
from router.core.jwt_keys import KeyRef, keyset_from_jwks, keyset_from_secret
from router.core.jwt_source import JwtSource
from tests.core.support import NOW, STAMPS, Facts

ISSUER = "https://id.example.com/"
AUDIENCE = "api"
SECRET = b"s" * 64
INVALID = 'Bearer error="invalid_token"'


@functools.cache
def rsa_key(name: str = "k1") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(name: str = "e1") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def ed_key(name: str = "d1") -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private, kid: str | None = None, **extra) -> dict:
    pub = private.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
    jwk.pop("key_ops", None)
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


def jwks(*jwk_list: dict) -> bytes:
    return orjson.dumps({"keys": list(jwk_list)})


def pem_public(private) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**over) -> dict:
    base = {"tid": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 3600, "iat": NOW, "nbf": NOW - 10}
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def token(private=None, alg: str = "RS256", kid: str | None = "k1", **over) -> str:
    """A token signed by `private` (default: rsa_key("k1")); claims(**over) as payload,
    where a value of ... drops that claim."""
    headers = {"kid": kid} if kid is not None else {}
    # The JWS layer signs any payload; pyjwt's JWT layer would refuse odd claims we test with.
    return pyjwt.api_jws.encode(orjson.dumps(claims(**over)), private if private is not None else rsa_key("k1"),
                                algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict, payload: dict, sign=None) -> str:
    """A token put together by hand, for what no JOSE library will produce."""
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(payload))}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def hs256_with(secret: bytes):
    return lambda msg: hmac.new(secret, msg, hashlib.sha256).digest()


def default_keys() -> KeyRef:
    return KeyRef(keyset_from_jwks(jwks(public_jwk(rsa_key("k1"), "k1"), public_jwk(ec_key("e1"), "e1"),
                                        public_jwk(ed_key("d1"), "d1")), "test JWKS"))


JWT_ROUTING = """
[routing]
sources = ["jwt", "header"]
anonymous = "reject"
"""


def jwt_config(jwt_toml: str = "", routing: str = JWT_ROUTING):
    """A ValidConfig with a [jwt] section: issuer, audience and a jwks_file unless overridden."""
    return load_bytes(jwt_config_text(jwt_toml, routing).encode(), fmt="toml", source="test")


def jwt_config_text(jwt_toml: str = "", routing: str = JWT_ROUTING) -> str:
    return (routing + "\n[jwt]\n"
            + ("" if "jwks_url" in jwt_toml or "secret_file" in jwt_toml or "jwks_file" in jwt_toml
               else 'jwks_file = "unused.json"\n')
            + ("" if "issuer" in jwt_toml else f'issuer = "{ISSUER}"\n')
            + ("" if "audience" in jwt_toml else f'audience = "{AUDIENCE}"\n')
            + ("" if "algorithms" in jwt_toml else 'algorithms = ["RS256", "ES256", "EdDSA"]\n')
            + jwt_toml + "\n" + STAMPS)


def jwt_snapshot(jwt_toml: str = "", routing: str = JWT_ROUTING, keys: KeyRef | None = None,
                 cache: TokenCache | None = None, on_unknown_kid=None):
    valid = jwt_config(jwt_toml, routing)
    keys = keys if keys is not None else default_keys()
    if "secret_file" in jwt_toml:
        keys = KeyRef(keyset_from_secret(SECRET, valid.config.jwt.algorithms, "test secret"))
    made = []

    def factory(v):
        made.append(JwtSource(v.config.jwt, keys, cache, on_unknown_kid))
        return made[-1]

    snap = build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": factory})
    return snap, made[0]


def bearer(tok: str, **facts) -> Facts:
    return Facts(authorization=f"Bearer {tok}", **facts)
