"""CPU cost of the jwt source on its own: a cached token, a full RS256/ES256/EdDSA check,
and decide() with each, without sockets (the proxy's share is dataplane_micro.py's).

    .venv/bin/python benchmarks/jwt_verify_cost.py [--number 20000] [--repeat 7]

Prints CPU microseconds per call (process time, so that other work on the machine does not
count), the minimum and the median of --repeat timings. The token is of a realistic
size (about 900 bytes, an access token with a dozen claims).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import orjson
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from router.config import load_bytes
from router.core import ALL_HEALTHY, build_snapshot, decide
from router.core.jwt_cache import TokenCache
from router.core.jwt_keys import KeyRef, keyset_from_jwks
from router.core.jwt_source import JwtSource

CONFIG = b"""
[routing]
sources = ["jwt"]
[jwt]
jwks_file = "unused.json"
algorithms = ["RS256", "ES256", "EdDSA"]
issuer = "https://id.example.com/"
audience = "api"
[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.0.0.1:80"]
[tenants]
acme = "eu-1"
"""


class Facts:
    __slots__ = ("method", "host", "tenant_header", "authorization", "geo", "client")

    def __init__(self, authorization: str) -> None:
        self.method, self.host, self.tenant_header, self.geo, self.client = "GET", None, None, None, "192.0.2.1"
        self.authorization = authorization


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--number", type=int, default=20000, help="calls per timing of the cached path")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()

    keys = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1()), "EdDSA": ed25519.Ed25519PrivateKey.generate()}
    to_jwk = {"RS256": RSAAlgorithm.to_jwk, "ES256": ECAlgorithm.to_jwk, "EdDSA": OKPAlgorithm.to_jwk}
    jwks = {"keys": [dict(to_jwk[alg](k.public_key(), as_dict=True), kid=alg) for alg, k in keys.items()]}
    keyref = KeyRef(keyset_from_jwks(orjson.dumps(jwks), "bench"))
    valid = load_bytes(CONFIG, fmt="toml", source="bench")
    now = time.time()
    claims = {"iss": "https://id.example.com/", "aud": "api", "sub": "user-1234567890@acme", "tid": "acme",
              "exp": int(now) + 3600, "nbf": int(now) - 60, "iat": int(now) - 60, "scope": "read write admin",
              "azp": "web-client-0123456789", "sid": "0" * 36, "jti": "1" * 36, "roles": ["a", "b", "c"]}

    def timed(label: str, fn, number: int) -> None:
        runs = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=args.repeat, timer=time.process_time)]
        print(f"{label:<44} min {min(runs):8.2f} us   median {statistics.median(runs):8.2f} us")

    for alg, key in keys.items():
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": alg})
        facts = Facts(f"Bearer {token}")
        cached = JwtSource(valid.config.jwt, keyref, TokenCache(100_000))
        uncached = JwtSource(valid.config.jwt, keyref, None)
        snap = build_snapshot(valid, loaded_at=now, extra_sources={"jwt": lambda v: cached})
        assert cached.resolve(facts, now) == "acme" and uncached.resolve(facts, now) == "acme"
        slow = max(200, args.number // 50)
        print(f"{alg}, token of {len(token)} bytes")
        timed("  jwt source, cached token", lambda: cached.resolve(facts, now), args.number)
        timed("  decide() with the jwt source, cached token", lambda: decide(facts, snap, ALL_HEALTHY, now), args.number)
        timed("  jwt source, full verification", lambda: uncached.resolve(facts, now), slow)


if __name__ == "__main__":
    main()
