"""JWT keys for `stamp-router route --token`: loaded once, synchronously, no event loop.

A jwks_url is fetched once with urllib (5 s timeout); when keys cannot be had the command
ends with a clear message on stderr and exit status 1, as for a bad config.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from router.core.jwt_keys import KeySet
from router.core.jwt_source import JwtSource
from router.core.snapshot import SourceFactory
from router.jwt.jwks import redact
from router.jwt.keyfiles import MAX_JWKS_BYTES, KeyLoadError, file_source, jwks_from_bytes, read_key_file

if TYPE_CHECKING:
    from router.config.load import ValidConfig

FETCH_TIMEOUT = 5.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # As the server does: a redirect could lead to a plain-HTTP hop.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def fetch_jwks(url: str) -> KeySet:
    shown = redact(url)
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/jwk-set+json, application/json",
                                                   "User-Agent": "stamp-router"})
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as resp:
            body = resp.read(MAX_JWKS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise KeyLoadError("jwt.jwks_url", f"{shown} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeyLoadError("jwt.jwks_url", f"cannot fetch {shown}: {reason}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise KeyLoadError("jwt.jwks_url", f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    return jwks_from_bytes(body, f"jwks_url {shown}", "jwt.jwks_url")


def load_keys(valid: "ValidConfig") -> KeySet:
    jwt = valid.config.jwt
    if jwt.jwks_url:
        return fetch_jwks(jwt.jwks_url)
    found = file_source(valid, jwt)
    if found is None:
        raise KeyLoadError("jwt", "[jwt] sets none of jwks_url, jwks_file, secret_file")
    return read_key_file(*found, jwt)


class _KeysOnFirstUse:
    """A KeyRef that loads on first use: `route --tenant` on a config with a jwks_url must
    not need the identity provider, since no token is looked at."""

    def __init__(self, valid: "ValidConfig") -> None:
        self._valid = valid
        self._keys: KeySet | None = None

    @property
    def current(self) -> KeySet:
        if self._keys is None:
            try:
                self._keys = load_keys(self._valid)
            except KeyLoadError as exc:
                raise SystemExit(f"stamp-router route: {exc.field}: {exc.message}") from None
        return self._keys


def offline_jwt_sources(valid: "ValidConfig") -> dict[str, SourceFactory]:
    cfg = valid.config
    if cfg.jwt is None or "jwt" not in cfg.routing.sources:
        print("note: \"jwt\" is not in routing.sources, so a token plays no part in routing", file=sys.stderr)
        return {}
    keys = _KeysOnFirstUse(valid)
    return {"jwt": lambda v: JwtSource(v.config.jwt, keys)}
