"""Fixtures of the health tests: backends whose probe and request answers a test scripts."""

from __future__ import annotations

import pytest

from tests.health.support import ScriptedBackend


@pytest.fixture
def scripted(bg):
    """Factory: scripted("name", health=lambda n: status, status=...) starts one."""
    started: list[ScriptedBackend] = []

    def make(name: str, **kwargs) -> ScriptedBackend:
        b = bg.run(ScriptedBackend(name, **kwargs).start())
        started.append(b)
        return b

    yield make
    for b in started:
        bg.run(b.stop())
