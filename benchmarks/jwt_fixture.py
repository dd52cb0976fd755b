"""Key material for the JWT routing benchmark: each client reuses one long-lived token.

Usage (from the repository root, with the project's venv):

    .venv/bin/python benchmarks/jwt_fixture.py OUT_DIR [--tenants acme,globex] [--days 30]
        [--issuer https://issuer.bench.test/] [--audience bench] [--claim tid]

writes into OUT_DIR:

    jwks.json        the public key as a JWKS (kid "bench-1", alg RS256, use sig)
    public.pem       the same public key as PEM, for HAProxy's jwt_verify(RS256, "public.pem")
    private.pem      the RSA 2048 private key (only to mint more tokens; keep it out of configs)
    router-jwt.toml  a [jwt] section for stamp-router using jwks.json (paste it into a config
                     that has "jwt" in routing.sources; jwks_file is an absolute path)
    tokens.json      {"<tenant>": "<token>"} valid for --days days
    token-<tenant>.txt  one token per file, for `wrk -H "Authorization: Bearer $(cat ...)"`

and prints one line per tenant: the tenant and its Authorization header value.

From Python (the benchmark harness, benchmarks/jwt_material.py):

    from jwt_fixture import bench_material
    got = bench_material(Path(dir), tenants=["acme"], issuer=..., audience=...)
    got["jwks_file"], got["public_pem"], got["tokens"]["acme"], got["config"]

The tokens carry iss, aud, sub, tid, iat, nbf and exp; only exp bounds their use. A token
is reused for the whole run, which is what the router's verified-token cache is for; run the
router with `cache_size = 0` under [jwt] to measure a full RS256 check on every request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "bench-1"
DEFAULT_ISSUER = "https://issuer.bench.test/"
DEFAULT_AUDIENCE = "bench"


def config_snippet(jwks_file: Path, issuer: str, audience: str, claim: str = "tid") -> str:
    return (
        "[jwt]\n"
        f"claim = {json.dumps(claim)}\n"
        'algorithms = ["RS256"]\n'
        f"jwks_file = {json.dumps(str(jwks_file.resolve()))}\n"
        f"issuer = {json.dumps(issuer)}\n"
        f"audience = {json.dumps(audience)}\n"
    )


def bench_material(directory: Path, *, tenants: list[str], issuer: str = DEFAULT_ISSUER,
                   audience: str = DEFAULT_AUDIENCE, days: float = 30.0, claim: str = "tid") -> dict:
    """Write the files listed in the module docstring into `directory`; return their paths,
    the tokens by tenant and the [jwt] config snippet."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()

    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    public_pem = directory / "public.pem"
    public_pem.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    private_pem = directory / "private.pem"
    private_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    private_pem.chmod(0o600)

    now = int(time.time())
    tokens = {}
    for tenant in tenants:
        claims = {"iss": issuer, "aud": audience, "sub": f"bench@{tenant}", claim: tenant,
                  "iat": now, "nbf": now - 60, "exp": now + int(days * 86400)}
        tokens[tenant] = jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID, "typ": "JWT"})
        (directory / f"token-{tenant}.txt").write_text(tokens[tenant] + "\n")
    (directory / "tokens.json").write_text(json.dumps(tokens, indent=2) + "\n")
    config = config_snippet(jwks_file, issuer, audience, claim)
    (directory / "router-jwt.toml").write_text(config)
    return {"jwks_file": str(jwks_file), "public_pem": str(public_pem), "private_pem": str(private_pem),
            "tokens": tokens, "config": config, "kid": KID, "expires": now + int(days * 86400)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--tenants", default="acme", help="comma-separated tenant ids (default: acme)")
    p.add_argument("--days", type=float, default=30.0, help="token lifetime in days (default: 30)")
    p.add_argument("--issuer", default=DEFAULT_ISSUER)
    p.add_argument("--audience", default=DEFAULT_AUDIENCE)
    p.add_argument("--claim", default="tid", help="claim holding the tenant id (default: tid)")
    args = p.parse_args(argv)
    tenants = [t for t in args.tenants.split(",") if t]
    got = bench_material(args.out_dir, tenants=tenants, issuer=args.issuer, audience=args.audience,
                         days=args.days, claim=args.claim)
    for tenant, token in got["tokens"].items():
        print(f"{tenant}\tBearer {token}")
    print(f"wrote {args.out_dir}/: jwks.json public.pem private.pem router-jwt.toml tokens.json token-*.txt",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
