"""Durations ("150ms", "2s", "5m") and sizes ("64KiB", "100MiB") as config values.

A bare number is taken as seconds or bytes. Units follow the Prometheus/Go style for
durations and IEC (KiB, MiB, GiB) plus SI (KB, MB, GB) for sizes, so an operator's
habits from HAProxy or nginx configs carry over.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)\s*")
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_duration(value: object) -> float:
    """Seconds, from a number of seconds or a string such as "1m30s" or "150ms"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like \"2s\"")
    if isinstance(value, (int, float)):
        if value != value or value in (math.inf, -math.inf):
            # TOML spells both; a NaN deadline never compares as passed, so it never fires.
            raise ValueError(f"a duration must be a finite number of seconds, not {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a duration is a number of seconds or a string like \"2s\"")
    pos, total, text = 0, 0.0, value.strip()
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative: {value!r}")
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if not m:
            raise ValueError(f"invalid duration {value!r}: use a number and a unit (us, ms, s, m, h), e.g. \"1m30s\"")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_size(value: object) -> int:
    """Bytes, from an integer or a string such as "64KiB" or "100MiB"."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like \"100MiB\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f"invalid size {value!r}: use bytes or a unit (KiB, MiB, GiB, KB, MB, GB), e.g. \"100MiB\"")


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
