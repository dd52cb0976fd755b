"""What a tenant id is (docs/config.md: 1 to 128 of A-Z a-z 0-9 . _ -)."""

from __future__ import annotations

import re
from itertools import islice
from typing import Iterable

MAX_TENANT_LEN = 128
TENANT_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_fullmatch = TENANT_RE.fullmatch


def is_valid_tenant(value: str) -> bool:
    return _fullmatch(value) is not None


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
_SLICE = 16384


def all_valid_tenants(ids: Iterable[str]) -> bool:
    """Whether every id is valid; the same answer as is_valid_tenant on each, in bulk.

    A million pins are checked with a few passes in C over joined strings instead of a
    million regex calls (about 0.15 s instead of 0.9 s). The ids are joined with "\n",
    which is outside the alphabet: an id holding one would split in two, so the
    separators are counted, and an empty id shows as a doubled or edge separator. Slices
    of _SLICE ids keep each joined string small enough to stay in the CPU caches.
    """
    it = iter(ids)
    while chunk := list(islice(it, _SLICE)):
        blob = "\n".join(chunk)
        if not (blob != "" and blob.isascii()
                and not blob.encode("ascii").translate(None, _ALPHABET + b"\n")
                and blob.count("\n") == len(chunk) - 1
                and "\n\n" not in blob and blob[:1] != "\n" and blob[-1:] != "\n"
                and max(map(len, chunk)) <= MAX_TENANT_LEN):
            return False
    return True
