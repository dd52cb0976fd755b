"""What the control side needs of the data path, and all it may touch: the port.

The control plane validates a change once, then hands it over here; whoever runs the
data path (router.server: a supervisor and its worker processes) carries it out. A pin
edit travels as the edit itself (`PinEdit`), so that a process serving the same base can
apply it and arrive at the same table, digest and version; anything else is a new
config, served by a new snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from router.config import ValidConfig
from router.core.snapshot import Snapshot


@dataclass(frozen=True)
class PinEdit:
    """A checked pin edit in its journal form (router.control.pins), with what apply_op
    needs to replay it on the same base."""

    op: dict[str, Any]
    base_version: str
    edits: int
    label: str | None = None      # the version it makes, when the source names it (etcd)


class DataPath(Protocol):
    def snapshot(self) -> Snapshot:
        """The snapshot being served."""

    async def apply(self, valid: ValidConfig, edit: PinEdit | None = None) -> Snapshot:
        """Serve `valid` (made from the served config by `edit`, when given). Returns once
        every process of the data path serves it; ConfigError and nothing changed if it
        cannot be served."""
