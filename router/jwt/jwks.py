"""A JWKS fetched over HTTP(S) with aiohttp and kept fresh.

When to refresh (refresh_delay): the response's Cache-Control max-age, bounded to
[jwks_min_refresh, jwks_max_refresh] (1 minute to 1 day by default); `no-cache` or
`no-store` mean the lower bound; no max-age means jwks_refresh (5 minutes by default).
An ETag is sent back as If-None-Match, so an unchanged JWKS costs a 304.

What is refused (the old keys stay): a status other than 200 (or 304 once keys are held),
a redirect (configure the final URL: a redirect could lead to a plain-HTTP hop), a body
over 1 MiB, a body that is not a JWKS with at least one usable signature key, a timeout
(5 s to connect, 10 s in all).

Static stability across restarts: each JWKS fetched is also saved under control.state_dir
(`jwks/<hash of the URL>.json`). When the identity provider cannot be reached as the
router starts, a saved copy no older than jwks_max_refresh is used instead, the failure
shows in status and metrics, and the refresher keeps trying. A running router would have
kept those same keys through the outage; a restart should not be worse. The copy is no
more trusted than lkg.json beside it: whoever can write one can write the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from router.core.jwt_keys import KeySet
from router.jwt.holders import KeyHolder, Unchanged
from router.jwt.keyfiles import MAX_JWKS_BYTES, KeyLoadError, jwks_from_bytes
from router.jwt.metrics import JwtMetrics

if TYPE_CHECKING:
    from router.config.schema import Jwt

log = logging.getLogger("router.jwt")
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.I)
_NO_CACHE_RE = re.compile(r"(?:^|,)\s*(no-cache|no-store)\s*(?:[,=]|$)", re.I)


def refresh_delay(cache_control: str | None, jwt: "Jwt") -> float:
    """Seconds until the next refresh after a successful fetch (module docstring)."""
    if cache_control:
        m = _MAX_AGE_RE.search(cache_control)
        if m is not None:
            return min(max(float(m.group(1)), jwt.jwks_min_refresh), jwt.jwks_max_refresh)
        if _NO_CACHE_RE.search(cache_control):
            return jwt.jwks_min_refresh
    return jwt.jwks_refresh


def redact(url: str) -> str:
    """The URL without user:password, for status, logs and metric labels."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise KeyLoadError("jwt.jwks_url", f"the JWKS is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def saved_copy_path(state_dir: str, url: str) -> str:
    return os.path.join(state_dir, "jwks", hashlib.sha256(url.encode()).hexdigest()[:16] + ".json")


def _read_small(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(2 * MAX_JWKS_BYTES + 4096)


class JwksManager(KeyHolder):
    """The key holder of one jwks_url."""

    kind = "jwks_url"

    def __init__(self, url: str, jwt: "Jwt", metrics: JwtMetrics, session: aiohttp.ClientSession,
                 state_dir: str | None = None, **kw) -> None:
        super().__init__(redact(url), jwt, metrics, **kw)
        self.url = url
        self.session = session
        self.saved_path = None if state_dir is None else saved_copy_path(state_dir, url)
        self.fetches = 0            # HTTP requests made, for status and tests
        self._etag: str | None = None
        self._cache_control: str | None = None

    async def fetch(self) -> KeySet | Unchanged:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        if self._etag is not None and self.keyref.current is not None:
            headers["If-None-Match"] = self._etag
        self.fetches += 1
        try:
            async with self.session.get(self.url, headers=headers, timeout=FETCH_TIMEOUT,
                                        allow_redirects=False) as resp:
                if resp.status == 304 and self.keyref.current is not None:
                    self._cache_control = resp.headers.get("Cache-Control", self._cache_control)
                    return Unchanged(counted=True)
                if resp.status != 200:
                    raise KeyLoadError("jwt.jwks_url", f"{self.location} answered HTTP {resp.status}"
                                       + (" (redirects are not followed; configure the final URL)"
                                          if 300 <= resp.status < 400 else ""))
                body = await _read_limited(resp, MAX_JWKS_BYTES)
                keys = jwks_from_bytes(body, f"jwks_url {self.location}", "jwt.jwks_url")
                self._etag = resp.headers.get("ETag")
                self._cache_control = resp.headers.get("Cache-Control")
                if self.saved_path is not None:
                    await asyncio.to_thread(self._save, body)
                return keys
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise KeyLoadError("jwt.jwks_url", f"cannot fetch {self.location}: {reason}") from None

    def delay_after_success(self) -> float:
        return refresh_delay(self._cache_control, self.jwt)

    def _save(self, body: bytes) -> None:
        record = orjson.dumps({"url": self.url, "saved_at": self.wall(), "jwks": body.decode("utf-8", "replace")})
        tmp = f"{self.saved_path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.saved_path), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(record)
            os.replace(tmp, self.saved_path)
        except OSError as exc:
            # Only the restart fallback is lost; the keys just fetched serve regardless.
            log.warning("jwt keys: cannot save a copy of %s to %s: %s", self.location, self.saved_path, exc.strerror)

    async def fallback(self) -> bool:
        if self.saved_path is None:
            return False
        try:
            record = orjson.loads(await asyncio.to_thread(_read_small, self.saved_path))
            if record.get("url") != self.url:
                return False
            age = self.wall() - float(record["saved_at"])
            keys = jwks_from_bytes(record["jwks"].encode(), f"jwks_url {self.location} (copy saved {age:.0f} s ago)",
                                   "jwt.jwks_url")
        except (OSError, ValueError, KeyError, TypeError, KeyLoadError):
            return False
        if not 0 <= age <= self.jwt.jwks_max_refresh:
            self.last_result += f" (a saved copy is {age:.0f} s old, more than jwks_max_refresh)"
            return False
        self.keyref.current = keys
        self.metrics.keys.labels(self.label).set(len(keys.keys))
        self.last_result += f" (serving the copy saved {age:.0f} s ago)"
        log.warning("jwt keys: %s unreachable at start; serving the copy saved %.0f s ago", self.location, age)
        return True

    def status(self) -> dict:
        out = super().status()
        out["fetches"] = self.fetches
        out["cache_control"] = self._cache_control
        return out
