"""The `jwt` tenant source: a verified claim of `Authorization: Bearer <token>`.

Rules it keeps, in the order it checks them (docs/jwt.md is the operator's version):

1. No Authorization header, or a scheme other than Bearer (`Basic ...`): not a token for
   this source, the next source is tried. The scheme is case-insensitive (RFC 7235 2.1,
   RFC 6750 2.1).
2. From here on every failure is a 401 `invalid_token` (RFC 6750 3.1) and the chain stops:
   a present but invalid token never falls through to a weaker source. The reason names
   what is wrong with the token, never what the configuration expects (the client sees
   it): `stamp-router route` and /route show the expected values alongside.
3. A token over `max_token_bytes` is refused before anything else is done with it.
4. The header is read without trusting it: `alg` must be on the allow-list (`none` never
   is), `crit` and unencoded payloads (`b64`) are refused, `jku`/`x5u`/`jwk`/`x5c` are
   ignored: keys come from the configuration only.
5. The key comes from the current key set by `kid`; keys without a kid match by algorithm
   and key type. The token's `alg` must be one the key may verify (jwt_keys), so an HS256
   token can never be checked against an RSA public key used as a secret.
6. The signature is checked before the payload is parsed.
7. `exp` is required, `nbf` optional, both with `leeway`, against the `now` argument (Unix
   seconds: the core reads no clock). `iss` must equal `issuer` if one is set. `aud` must
   hold an accepted audience if `audience` is set, and a token with an `aud` is refused
   when none is set (RFC 7519 4.1.3).
8. The claim (a literal top-level name first, then a dotted path) must be a string or an
   integer that is a valid tenant id.

Verification uses pyjwt's algorithm implementations; the compact-token parsing is ours
because pyjwt's costs about 300 microseconds per token on its base64 checks (a signature
check is about 40). Verified tokens go to a TokenCache when one is given. A token whose
kid is unknown calls `on_unknown_kid(kid)` so the runtime can schedule a rate-limited JWKS
refetch: the token is refused now and accepted once the refetch brought its key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any, Callable

import orjson

from router.core.jwt_cache import TokenCache, cache_key
from router.core.jwt_keys import ALGORITHMS, SUPPORTED_ALGORITHMS, Key, KeyRef
from router.core.sources import RequestFacts, TenantRejected, TenantSource
from router.core.tenant import MAX_TENANT_LEN, is_valid_tenant
from router.errors import ErrorKind

if TYPE_CHECKING:
    from router.config.schema import Jwt

WWW_AUTHENTICATE = 'Bearer error="invalid_token"'
# RFC 7235 2.1: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]; tabs are
# accepted too so that "Bearer<TAB>x" cannot dodge this source.
_CREDENTIALS_RE = re.compile(r"[ \t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:[ \t]+(.*?))?[ \t]*", re.S)
# RFC 7515 7.1: three base64url parts without padding; an empty signature is matched so
# that `alg: none` is refused for its algorithm, not its shape.
_JWS_RE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
_b64decode = base64.urlsafe_b64decode
_loads = orjson.loads
_B64_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def _unb64(part: str) -> bytes:
    # RFC 4648 3.5: the unused low bits of the last character must be zero, so that one
    # token has one spelling (and we agree with pyjwt on what is well-formed).
    rest = len(part) % 4
    if rest > 1 and _B64_VALUE[part[-1]] & (0b1111 if rest == 2 else 0b11):
        raise binascii.Error("non-canonical base64url")
    return _b64decode(part + "=" * (-len(part) % 4))


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Invalid(TenantRejected):
    def __init__(self, reason: str) -> None:
        super().__init__(ErrorKind.INVALID_TOKEN, f"invalid token: {reason}", www_authenticate=WWW_AUTHENTICATE)


def bearer_token(authorization: str, max_bytes: int) -> str | None:
    """The token of a Bearer credential; None when the scheme is another one."""
    if authorization.startswith("Bearer "):
        token = authorization[7:].strip(" \t")
    else:
        m = _CREDENTIALS_RE.fullmatch(authorization)
        if m is None or m.group(1).lower() != "bearer":
            return None
        token = m.group(2) or ""
    if len(token) > max_bytes:
        raise Invalid(f"the token is {len(token)} bytes, more than max_token_bytes ({max_bytes})")
    if not token:
        raise Invalid("the Bearer credential is empty")
    return token


class JwtSource(TenantSource):
    name = "jwt"
    __slots__ = ("keys", "cache", "on_unknown_kid", "algorithms", "issuer", "audience", "leeway",
                 "claim", "max_token_bytes", "residency_claim", "__weakref__")

    def __init__(self, cfg: "Jwt", keys: KeyRef, cache: TokenCache | None = None,
                 on_unknown_kid: Callable[[str], None] | None = None) -> None:
        bad = [a for a in cfg.algorithms if a not in SUPPORTED_ALGORITHMS]
        if bad:  # the config schema refuses these already; a source never trusts that alone
            raise ValueError(f"unsupported JWT algorithms: {bad}")
        self.keys = keys
        self.cache = cache
        self.on_unknown_kid = on_unknown_kid
        self.algorithms = frozenset(cfg.algorithms)
        self.issuer = cfg.issuer
        aud = cfg.audience
        self.audience = None if aud is None else frozenset([aud] if isinstance(aud, str) else aud)
        self.leeway = float(cfg.leeway)
        self.claim = cfg.claim
        self.max_token_bytes = cfg.max_token_bytes
        self.residency_claim = cfg.residency_claim

    # The hot path: a cached token costs a header split, one hash and one dict lookup.
    def resolve(self, facts: RequestFacts, now: float) -> str | None:
        auth = facts.authorization
        if auth is None:
            return None
        token = bearer_token(auth, self.max_token_bytes)
        if token is None:
            return None
        cache = self.cache
        if cache is None:
            return self._verify(token, now, None, None)
        keys = self.keys.current
        key = cache_key(token)
        if keys is not None:
            tenant = cache.get(key, now, keys.idents)
            if tenant is not None:
                return tenant
        return self._verify(token, now, None, key)

    def resolve_explained(self, facts: RequestFacts, now: float, steps: list[str]) -> str | None:
        """resolve(), appending each finding to `steps`; decide() calls it when explaining.
        The cache is neither read nor written, so the explanation is a fresh check."""
        auth = facts.authorization
        if auth is None:
            steps.append("jwt: no Authorization header")
            return None
        token = bearer_token(auth, self.max_token_bytes)
        if token is None:
            scheme = auth.strip().split(None, 1)[0] if auth.strip() else ""
            steps.append(f"jwt: Authorization scheme {_shown(scheme, 20)} is not Bearer: no token for this source")
            return None
        keys = self.keys.current
        if keys is not None:
            steps.append(f"jwt: keys from {keys.origin}: " + ", ".join(k.describe() for k in keys.keys))
        steps.append(f"jwt: expects alg in {sorted(self.algorithms)}, iss {self.issuer!r}, "
                     f"aud in {sorted(self.audience) if self.audience else None}, claim {self.claim!r}")
        return self._verify(token, now, steps, None)

    def claimed_residency(self, facts: RequestFacts, now: float) -> str | None:
        """The residency claim of the request's verified token (router.core.residency);
        None without a token or without the claim. A token that does not verify raises
        Invalid, as resolve() does."""
        auth = facts.authorization
        token = None if auth is None else bearer_token(auth, self.max_token_bytes)
        if token is None or self.residency_claim is None:
            return None
        cache = self.cache
        key = None
        if cache is not None:
            key = cache_key(token)
            keys = self.keys.current
            entry = cache.entry(key, now, keys.idents) if keys is not None else None
            if entry is not None:
                return entry[3]
        return self._verified(token, now, None, key)[1]

    def _verify(self, token: str, now: float, steps: list[str] | None, key: bytes | None) -> str:
        return self._verified(token, now, steps, key)[0]

    def _verified(self, token: str, now: float, steps: list[str] | None,
                  key: bytes | None) -> tuple[str, str | None]:
        """(tenant, residency claim) of a token that passes every check; else Invalid."""
        if not token.isascii():
            raise Invalid("the token has non-ASCII characters")
        m = _JWS_RE.fullmatch(token)
        if m is None:
            if token.count(".") == 4:
                raise Invalid("encrypted tokens (JWE, five parts) are not supported")
            raise Invalid("not a signed JWT (three base64url parts separated by dots, no padding)")
        header_b64, payload_b64, sig_b64 = m.groups()
        try:
            header = _loads(_unb64(header_b64))
        except (binascii.Error, ValueError):
            raise Invalid("the header is not base64url-encoded JSON") from None
        if type(header) is not dict:
            raise Invalid("the header is not a JSON object")
        alg, kid = header.get("alg"), header.get("kid")
        if steps is not None:
            steps.append(f"jwt: header alg {_shown(alg, 20)}, kid {_shown(kid)}")
        if type(alg) is not str:
            raise Invalid("the header has no alg")
        if alg.lower() == "none":
            raise Invalid("unsigned tokens (alg none) are refused")
        if alg not in self.algorithms:
            raise Invalid(f"algorithm {_shown(alg, 20)} is not allowed")
        if kid is not None and type(kid) is not str:
            raise Invalid("the header's kid is not a string")
        if "crit" in header:
            raise Invalid("critical header extensions (crit) are not supported")
        if header.get("b64", True) is not True:
            raise Invalid("unencoded payloads (b64) are not supported")
        if not sig_b64:
            raise Invalid("the token has no signature")
        try:
            signature = _unb64(sig_b64)
        except binascii.Error:
            raise Invalid("the signature is not base64url") from None

        keyset = self.keys.current
        if keyset is None:
            raise Invalid("no verification keys are loaded")
        candidates, known = keyset.select(kid, alg)
        verified_by = self._check_signature(token, len(header_b64) + 1 + len(payload_b64), alg, signature, candidates)
        if verified_by is None:
            if not known:
                if self.on_unknown_kid is not None:
                    self.on_unknown_kid(kid)
                if steps is not None:
                    steps.append(f"jwt: key ids held: {', '.join(map(repr, keyset.kids())) or '(none)'}")
                raise Invalid(f"unknown key id {_shown(kid)}")
            if not candidates:
                raise Invalid(f"no key for algorithm {alg}" + (f" with kid {_shown(kid)}" if kid is not None else ""))
            raise Invalid("the signature does not verify")
        if steps is not None:
            steps.append(f"jwt: signature ({alg}) verified with {verified_by.describe()}")

        try:
            claims = _loads(_unb64(payload_b64))
        except (binascii.Error, ValueError):
            raise Invalid("the payload is not base64url-encoded JSON") from None
        if type(claims) is not dict:
            raise Invalid("the payload is not a JSON object")
        exp = self._check_times(claims, now, steps)
        self._check_issuer_audience(claims, steps)
        tenant = self._tenant(claims, steps)
        residency = self._residency(claims) if self.residency_claim is not None else None
        if key is not None:
            self.cache.put(key, tenant, exp, verified_by.ident, residency)
        return tenant, residency

    @staticmethod
    def _check_signature(token: str, split: int, alg: str, signature: bytes,
                         candidates: tuple[Key, ...]) -> Key | None:
        signing_input = token[:split].encode("ascii")
        algorithm = ALGORITHMS[alg]
        for candidate in candidates:
            try:
                if algorithm.verify(signing_input, candidate.key, signature):
                    return candidate
            except (ValueError, TypeError):
                # A malformed signature for this key type (wrong length) is just "no".
                continue
        return None

    def _check_times(self, claims: dict, now: float, steps: list[str] | None) -> float:
        leeway = self.leeway
        exp = claims.get("exp")
        if exp is None:
            raise Invalid("the token has no exp")
        if type(exp) not in (int, float):
            raise Invalid("exp is not a number")
        if now >= exp + leeway:
            raise Invalid(f"expired: exp {exp} is {now - exp:.0f} s ago (leeway {leeway:g} s)")
        nbf = claims.get("nbf")
        if nbf is not None:
            if type(nbf) not in (int, float):
                raise Invalid("nbf is not a number")
            if now < nbf - leeway:
                raise Invalid(f"not yet valid: nbf {nbf} is {nbf - now:.0f} s ahead (leeway {leeway:g} s)")
        if steps is not None:
            steps.append(f"jwt: exp {exp} ({exp - now:+.0f} s)" + (f", nbf {nbf}" if nbf is not None else "")
                         + f": valid now (leeway {leeway:g} s)")
        return float(exp)

    def _check_issuer_audience(self, claims: dict, steps: list[str] | None) -> None:
        if self.issuer is not None:
            iss = claims.get("iss")
            if iss != self.issuer:
                raise Invalid(f"issuer {_shown(iss)} is not accepted")
        aud = claims.get("aud")
        if aud is not None:
            if type(aud) is str:
                auds = (aud,)
            elif type(aud) is list and all(type(a) is str for a in aud):
                auds = aud
            else:
                raise Invalid("aud is neither a string nor a list of strings")
        if self.audience is not None:
            if aud is None:
                raise Invalid("the token has no aud")
            if self.audience.isdisjoint(auds):
                raise Invalid(f"audience {_shown(aud)} is not accepted")
        elif aud is not None:
            raise Invalid(f"the token is for audience {_shown(aud)} but jwt.audience is not set (RFC 7519 4.1.3)")
        if steps is not None:
            steps.append(f"jwt: iss {_shown(claims.get('iss'))}, aud {_shown(aud)}: accepted")

    @staticmethod
    def _claim(claims: dict, name: str) -> Any:
        # A literal name first: namespaced claims such as "https://example.com/tenant" hold dots.
        value = claims.get(name)
        if value is None and "." in name:
            value = claims
            for part in name.split("."):
                value = value.get(part) if type(value) is dict else None
        return value

    def _residency(self, claims: dict) -> str | None:
        value = self._claim(claims, self.residency_claim)
        if value is not None and (type(value) is not str or not value):
            raise Invalid(f"claim {self.residency_claim!r} (the residency) is not a non-empty string")
        return value

    def _tenant(self, claims: dict, steps: list[str] | None) -> str:
        value = self._claim(claims, self.claim)
        if value is None:
            raise Invalid(f"the token has no claim {self.claim!r}")
        if type(value) is int:
            value = str(value)
        if type(value) is not str:
            raise Invalid(f"claim {self.claim!r} is not a string")
        if not is_valid_tenant(value):
            raise Invalid(f"claim {self.claim!r} value {_shown(value)} is not a valid tenant id "
                          f"(1 to {MAX_TENANT_LEN} of A-Z a-z 0-9 . _ -)")
        if steps is not None:
            steps.append(f"jwt: claim {self.claim!r} = {value!r}")
        return value
