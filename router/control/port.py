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


@dataclass(frozen=True)
class TenantWork:
    """One tenant's work in flight in the whole router (every worker summed)."""

    stamps: dict[str, tuple[int, int, int]]   # stamp -> (requests, writes, WebSocket tunnels)
    held: int                                 # requests held by a paused pin
    unanswered: int = 0                       # workers that did not answer: the sums are not the router's

    def busy(self, writes_only: bool = False) -> bool:
        """Whether anything (or any write) of the tenant may still be running on a stamp:
        unknown counts as yes. A tunnel counts as a write: it carries anything."""
        if self.unanswered:
            return True
        return any((writes if writes_only else requests) or tunnels
                   for requests, writes, tunnels in self.stamps.values())

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"in_flight": {stamp: {"requests": r, "writes": w, "tunnels": t}
                                             for stamp, (r, w, t) in sorted(self.stamps.items())},
                               "held": self.held}
        if self.unanswered:
            out["workers_unanswered"] = self.unanswered
        return out


class DataPath(Protocol):
    def snapshot(self) -> Snapshot:
        """The snapshot being served."""

    async def apply(self, valid: ValidConfig, edit: PinEdit | None = None) -> Snapshot:
        """Serve `valid` (made from the served config by `edit`, when given). Returns once
        every process of the data path serves it; ConfigError and nothing changed if it
        cannot be served."""

    def reforking(self) -> bool:
        """Whether the workers serving now are about to be replaced by a new generation
        (they would drain, answering what they hold 503)."""

    async def tenant_work(self, tenant: str, close_tunnels: bool = False) -> TenantWork:
        """The tenant's work in flight, summed over every process of the data path;
        with `close_tunnels`, its open tunnels are closed first (counted out as they go)."""
