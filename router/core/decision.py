# cython: annotation_typing=False
"""The routing decision: one value that the proxy carries out and `/route` explains."""

from __future__ import annotations

from typing import NamedTuple

from router.errors import STATUS, ErrorKind

PINNED, HASH, GEO, DEFAULT, FAILOVER = "pinned", "hash", "geo", "default", "failover"

# Pin modes other than the default read-write (config `mode`, the snapshot's `modes`).
READ_ONLY, PAUSED = "read-only", "paused"


# A NamedTuple rather than a frozen dataclass: one is built per request, and a frozen
# dataclass pays object.__setattr__ per field (measured ~4x slower to construct).
class Decision(NamedTuple):
    tenant: str | None
    source: str | None                # which source yielded the tenant (None: anonymous)
    stamp: str | None                 # the stamp that serves; None when refused
    reason: str | None                # pinned | hash | geo | default | failover
    backends: tuple[str, ...] = ()    # healthy candidates in that stamp
    error: ErrorKind | None = None
    message: str = ""
    placed: str | None = None         # the stamp placement chose, when a failover moved it
    placed_by: str | None = None      # how `placed` was chosen (pinned | hash | geo | default)
    mode: str | None = None           # the pin's mode when not read-write: read-only | paused
    considered: tuple[str, ...] = ()  # the steps taken, filled when explain=True
    retry_after: int | None = None
    www_authenticate: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def held(self) -> bool:
        """The outcome is a hold: the tenant's pin is paused, so the request waits for the
        pause to end (and is decided again then) rather than being answered now."""
        return self.error is ErrorKind.TENANT_PAUSED

    @property
    def status(self) -> int | None:
        return None if self.error is None else STATUS[self.error]

    def as_dict(self) -> dict:
        out = {
            "tenant": self.tenant, "source": self.source, "stamp": self.stamp,
            "reason": self.reason, "backends": list(self.backends),
        }
        if self.placed is not None:
            out["failover_from"] = self.placed
            out["placed_by"] = self.placed_by
        if self.mode is not None:
            out["mode"] = self.mode
        if self.held:
            out["outcome"] = "hold"
        if self.error is not None:
            out["error"] = self.error.value
            out["status"] = STATUS[self.error]
            out["message"] = self.message
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.considered:
            out["considered"] = list(self.considered)
        return out


_tuple_new = tuple.__new__


def forward(tenant: str | None, source: str | None, stamp: str, reason: str,
            backends: tuple[str, ...], mode: str | None, considered: tuple[str, ...]) -> Decision:
    """A forwarding Decision, built without the generated __new__ (a Python function with
    thirteen parameters): this runs once per proxied request."""
    return _tuple_new(Decision, (tenant, source, stamp, reason, backends, None, "", None, None, mode,
                                 considered, None, None))
