"""The verified-token cache: a bounded LRU from a token to the tenant it proved.

Rules it keeps:

- Only tokens that passed every check are stored (`put` is called after verification);
  a refused token is never stored, so it can never come back as valid.
- An entry is good until its token's `exp` and no longer (leeway is not added: once a
  token is past exp, the full check decides, leeway included).
- An entry remembers the identity of the key that verified it (kid + thumbprint); a hit
  counts only while that key is in the current key set, so a key removed from the JWKS
  stops validating tokens cached under it at once.
- At most `max_entries` entries; the least recently used goes first.

The key is the SHA-256 of the token, not the token: a 100,000-entry cache then holds about
32 MB rather than over 100 MB with the tokens themselves, and a hash of that width cannot
be made to collide. Hashing costs about a microsecond, mostly OpenSSL's fixed overhead. The hit path is one hash, one dict lookup and two comparisons.
The runtime owns one cache per [jwt] configuration (a changed issuer, audience or claim
must not reuse answers given under the old one) and hands it to the source.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

_sha256 = hashlib.sha256


def cache_key(token: str) -> bytes:
    return _sha256(token.encode()).digest()


class TokenCache:
    __slots__ = ("max_entries", "_entries", "hits", "misses")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a token cache holds at least one entry (cache_size = 0 means no cache)")
        self.max_entries = max_entries
        # tenant, exp, key identity, residency claim (None when not configured or absent)
        self._entries: OrderedDict[bytes, tuple[str, float, str, str | None]] = OrderedDict()
        # Plain ints: the metrics collector reads them at scrape time, so a hit costs no lock.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float, idents: frozenset[str]) -> str | None:
        entry = self._entries.get(key)
        if entry is not None:
            if now < entry[1] and entry[2] in idents:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            del self._entries[key]
        self.misses += 1
        return None

    def entry(self, key: bytes, now: float, idents: frozenset[str]) -> tuple[str, float, str, str | None] | None:
        """The whole entry under the rules of get(), for what else the token proved."""
        return self._entries[key] if self.get(key, now, idents) is not None else None

    def put(self, key: bytes, tenant: str, exp: float, ident: str, residency: str | None = None) -> None:
        entries = self._entries
        entries[key] = (tenant, exp, ident, residency)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
