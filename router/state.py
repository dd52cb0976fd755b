# cython: annotation_typing=False
"""The router's one piece of swapped state: the current snapshot and its proxy settings.

`current` is a (Snapshot, ProxySettings) tuple replaced as a whole, so a request that
reads it once sees one consistent pair; a reload is a single attribute assignment on
the event loop thread.
"""

from __future__ import annotations

from typing import Callable

from router.core.snapshot import Snapshot
from router.proxy.settings import ProxySettings, settings_for


class RouterState:
    def __init__(self, snapshot: Snapshot, health) -> None:
        self.current: tuple[Snapshot, ProxySettings] = (snapshot, settings_for(snapshot))
        self.health = health
        self._on_swap: list[Callable[[Snapshot], None]] = []
        health.sync(snapshot)

    @property
    def snapshot(self) -> Snapshot:
        return self.current[0]

    @property
    def settings(self) -> ProxySettings:
        return self.current[1]

    def on_swap(self, callback: Callable[[Snapshot], None]) -> None:
        self._on_swap.append(callback)

    def swap(self, snapshot: Snapshot) -> None:
        settings = settings_for(snapshot)
        self.health.sync(snapshot)
        self.current = (snapshot, settings)
        for callback in self._on_swap:
            callback(snapshot)
