"""Verification keys for the jwt source: an immutable key set built from a JWKS or a secret.

Rules this module keeps (docs/jwt.md explains them for operators):

- Only signature keys: a JWK whose `use` is not "sig" or whose `key_ops` lack "verify" is
  skipped, as are symmetric (`oct`) keys in a JWKS: a shared secret comes from
  `secret_file` only, so a JWKS can never turn an HS* token into something we verify.
- Each key knows the algorithms it may verify, from its type and curve (RFC 7518 3.1),
  narrowed to the JWK's own `alg` when it names one. A token's `alg` must be in that set:
  this is what stops RS/HS key confusion even if the allow-list were wrong.
- RSA keys under 2048 bits (RFC 7518 3.3) and secrets shorter than the hash output of an
  allowed HS algorithm (RFC 7518 3.2) are refused.
- A key's identity is its `kid` plus its RFC 7638 thumbprint, so a kid reused for other
  key material counts as a different key (the token cache relies on this).

Nothing here reads files, sockets or clocks; router.jwt and router.jwt_offline do the IO.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms
from jwt.exceptions import PyJWTError

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
OKP_CURVES = ("Ed25519", "Ed448")
HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}   # name -> minimum secret bytes
PUBLIC_KEY_ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA")
SUPPORTED_ALGORITHMS = (*PUBLIC_KEY_ALGORITHMS, *HMAC_ALGORITHMS)
MIN_RSA_BITS = 2048
# A token without a kid may be tried against several keys; each try is a signature check,
# so an attacker could make us do this many per request, and no more.
MAX_CANDIDATES = 4

# pyjwt's algorithm objects do the cryptography; their parsers are not used (see jwt_source).
ALGORITHMS: Mapping[str, Algorithm] = {name: alg for name, alg in get_default_algorithms().items()
                                       if name in SUPPORTED_ALGORITHMS}
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                       "OKP": ("crv", "kty", "x"), "oct": ("k", "kty")}


class UnusableKey(ValueError):
    """A JWK or secret that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    kty: str                       # RSA | EC | OKP | oct
    algorithms: frozenset[str]     # what this key may verify
    key: Any = field(repr=False)   # a cryptography public key, or the secret's bytes
    thumbprint: str                # RFC 7638, base64url SHA-256
    ident: str                     # kid + "#" + thumbprint: what cached tokens remember
    detail: str = ""               # curve or size, for status and explanations

    def describe(self) -> str:
        who = f"kid {self.kid!r}" if self.kid is not None else "key without kid"
        if self.kty == "oct":
            return f"shared secret ({self.detail})"
        return f"{who} ({self.kty} {self.detail}, thumbprint {self.thumbprint[:12]})"

    def public_info(self) -> dict:
        """What /readyz, /config and status may show: never secret material or its hash."""
        if self.kty == "oct":
            return {"kty": "oct", "detail": self.detail, "algorithms": sorted(self.algorithms)}
        return {"kid": self.kid, "kty": self.kty, "detail": self.detail,
                "algorithms": sorted(self.algorithms), "thumbprint": self.thumbprint}


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[Key, ...]
    origin: str                                # where it came from, for explanations
    skipped: tuple[str, ...] = ()              # why some JWKs were left out
    by_kid: Mapping[str, tuple[Key, ...]] = field(init=False, repr=False)
    kidless: tuple[Key, ...] = field(init=False, repr=False)
    idents: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_kid: dict[str, tuple[Key, ...]] = {}
        for key in self.keys:
            if key.kid is not None:
                by_kid[key.kid] = by_kid.get(key.kid, ()) + (key,)
        object.__setattr__(self, "by_kid", by_kid)
        object.__setattr__(self, "kidless", tuple(k for k in self.keys if k.kid is None))
        object.__setattr__(self, "idents", frozenset(k.ident for k in self.keys))

    def select(self, kid: str | None, alg: str) -> tuple[tuple[Key, ...], bool]:
        """The keys to try for a token's (kid, alg), and whether its kid is known.

        A kid picks the keys with that kid; keys published without a kid also match any
        token of a fitting algorithm. A token without a kid tries every fitting key,
        keys without a kid first, at most MAX_CANDIDATES of them.
        """
        if kid is not None:
            named = self.by_kid.get(kid)
            pool = (named or ()) + self.kidless
            known = named is not None
        else:
            pool = self.kidless + tuple(k for k in self.keys if k.kid is not None)
            known = True
        return tuple(k for k in pool if alg in k.algorithms)[:MAX_CANDIDATES], known

    def kids(self) -> list[str]:
        return sorted(self.by_kid)


class KeyRef:
    """The one mutable cell: the current key set, replaced whole when keys rotate.

    A snapshot's jwt source holds this reference, so a JWKS refresh takes effect without
    building a new snapshot. Assigning an attribute is atomic for the event loop.
    """

    __slots__ = ("current",)

    def __init__(self, current: KeySet | None = None) -> None:
        self.current = current


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    if not all(isinstance(jwk.get(m), str) for m in members):
        raise UnusableKey(f"missing or non-string members among {', '.join(members)}")
    canonical = orjson.dumps({m: jwk[m] for m in members}, option=orjson.OPT_SORT_KEYS)
    return _b64url(hashlib.sha256(canonical).digest())


def _public(key: Any) -> Any:
    # A JWKS that carries private parts still gives us the public key; we never sign.
    if isinstance(key, (RSAPrivateKey, EllipticCurvePrivateKey, Ed25519PrivateKey, Ed448PrivateKey)):
        return key.public_key()
    return key


def key_from_jwk(jwk: Any) -> Key:
    """One public JWK as a Key; raises UnusableKey naming why it cannot verify tokens."""
    if not isinstance(jwk, dict):
        raise UnusableKey("not a JSON object")
    kty, kid = jwk.get("kty"), jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKey("kid is not a string")
    use, ops = jwk.get("use"), jwk.get("key_ops")
    if use is not None and use != "sig":
        raise UnusableKey(f"use is {use!r}, not \"sig\"")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not include \"verify\"")
    try:
        if kty == "RSA":
            key = _public(RSAAlgorithm.from_jwk(jwk))
            bits = key.key_size
            if bits < MIN_RSA_BITS:
                raise UnusableKey(f"RSA key of {bits} bits; at least {MIN_RSA_BITS} are required")
            fits, detail = set(RSA_ALGORITHMS), f"{bits} bits"
        elif kty == "EC":
            crv = jwk.get("crv")
            if crv not in EC_ALGORITHMS:
                raise UnusableKey(f"EC curve {crv!r} is not one of {', '.join(EC_ALGORITHMS)}")
            key = _public(ECAlgorithm.from_jwk(jwk))
            fits, detail = {EC_ALGORITHMS[crv]}, crv
        elif kty == "OKP":
            crv = jwk.get("crv")
            if crv not in OKP_CURVES:
                raise UnusableKey(f"OKP curve {crv!r} is not a signature curve ({', '.join(OKP_CURVES)})")
            key = _public(OKPAlgorithm.from_jwk(jwk))
            fits, detail = {"EdDSA"}, crv
        elif kty == "oct":
            raise UnusableKey("symmetric (oct) keys are not taken from a JWKS; use secret_file")
        else:
            raise UnusableKey(f"unsupported kty {kty!r}")
    except PyJWTError as exc:
        raise UnusableKey(str(exc)) from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, UnusableKey):
            raise
        raise UnusableKey(f"bad key material: {exc}") from None
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in fits:
            raise UnusableKey(f"alg {alg!r} does not fit a {kty} {detail} key")
        fits = {alg}
    for name in fits:
        ALGORITHMS[name].prepare_key(key)   # pyjwt's own key/curve check, once, not per token
    tp = thumbprint(jwk)
    return Key(kid=kid, kty=kty, algorithms=frozenset(fits), key=key, thumbprint=tp,
               ident=f"{kid or ''}#{tp}", detail=detail)


def keyset_from_jwks(document: bytes, origin: str) -> KeySet:
    """Parse a JWKS document (RFC 7517 5). Unusable keys are skipped with a reason; a
    document with no usable key at all raises UnusableKey."""
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise UnusableKey(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise UnusableKey("not a JWKS: expected an object with a \"keys\" array")
    keys, skipped = [], []
    for i, jwk in enumerate(doc["keys"]):
        try:
            keys.append(key_from_jwk(jwk))
        except UnusableKey as exc:
            name = jwk.get("kid") if isinstance(jwk, dict) else None
            skipped.append(f"keys[{i}]" + (f" (kid {name!r})" if isinstance(name, str) else "") + f": {exc}")
    if not keys:
        raise UnusableKey("no usable signature key" + (f" ({'; '.join(skipped)})" if skipped else " (\"keys\" is empty)"))
    return KeySet(tuple(keys), origin, tuple(skipped))


def keyset_from_secret(secret: bytes, algorithms: tuple[str, ...] | list[str], origin: str) -> KeySet:
    """A shared secret for the allowed HS algorithms, as a one-key set."""
    hs = [a for a in algorithms if a in HMAC_ALGORITHMS]
    if not hs:
        raise UnusableKey("a shared secret verifies only HS256/384/512; none is allowed")
    need = max(HMAC_ALGORITHMS[a] for a in hs)
    if len(secret) < need:
        raise UnusableKey(f"the secret is {len(secret)} bytes; {max(hs, key=HMAC_ALGORITHMS.get)} "
                        f"needs at least {need} (RFC 7518 3.2)")
    try:
        for name in hs:
            ALGORITHMS[name].prepare_key(secret)   # refuses PEM/JWK text used as a secret
    except PyJWTError as exc:
        raise UnusableKey(str(exc)) from None
    tp = thumbprint({"kty": "oct", "k": _b64url(secret)})
    key = Key(kid=None, kty="oct", algorithms=frozenset(hs), key=secret, thumbprint=tp,
              ident=f"#{tp}", detail=f"{len(secret)} bytes")
    return KeySet((key,), origin)
