"""What a tenant id is (design.md section 3.1)."""

from __future__ import annotations

import re

MAX_TENANT_LEN = 128
TENANT_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_fullmatch = TENANT_RE.fullmatch


def is_valid_tenant(value: str) -> bool:
    return _fullmatch(value) is not None
