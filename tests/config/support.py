"""Shared by the config tests: a small valid base document and error collectors."""

from __future__ import annotations

import pytest

from router.config import ConfigError, load_bytes

# Two residencies, two stamps each: enough for every cross-field rule.
BASE = """
[routing]
sources = ["subdomain", "header"]
domains = ["stamps.example.com"]

[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.1.0.10:8080"]

[[stamps]]
name = "eu-2"
region = "eu"
backends = ["10.1.1.10:8080"]

[[stamps]]
name = "us-1"
region = "us"
backends = ["10.2.0.10:8080"]
"""


def load_toml(text: str, base_dir: str = "."):
    return load_bytes(text.encode(), fmt="toml", source="test", base_dir=base_dir)


def config_errors(text: str, base_dir: str = ".") -> list[tuple[str, str]]:
    """Every (path, message) the config is refused with; fails the test if it loads."""
    with pytest.raises(ConfigError) as info:
        load_toml(text, base_dir)
    return info.value.errors


def error_at(text: str, path: str, base_dir: str = ".") -> str:
    """The one message reported at `path` (the test fails if there is not exactly one)."""
    errors = config_errors(text, base_dir)
    found = [m for p, m in errors if p == path]
    assert len(found) == 1, f"expected one error at {path!r}, got {errors}"
    return found[0]
