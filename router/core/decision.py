# cython: annotation_typing=False
"""The routing decision: one value that the proxy carries out and `/route` explains."""

from __future__ import annotations

from router.errors import STATUS, ErrorKind

PINNED, HASH, GEO, DEFAULT, FAILOVER = "pinned", "hash", "geo", "default", "failover"

# Pin modes other than the default read-write (config `mode`, the snapshot's `modes`).
READ_ONLY, PAUSED = "read-only", "paused"

_FIELDS = ("tenant", "source", "stamp", "reason", "backends", "error", "message", "placed", "placed_by", "mode",
           "considered", "retry_after", "www_authenticate")


class Decision:
    """A value: built once by decide(), read by the proxy, `/route` and `stamp-router route`,
    never changed. A typed class with C fields in the compiled build (decision.pxd; read-only
    from Python there), so the exchange reads a field as C, where a NamedTuple's field is
    a descriptor looked up per read (about a dozen reads per request)."""

    __slots__ = _FIELDS

    def __init__(self, tenant: str | None, source: str | None, stamp: str | None, reason: str | None,
                 backends: tuple[str, ...] = (), error: ErrorKind | None = None, message: str = "",
                 placed: str | None = None, placed_by: str | None = None, mode: str | None = None,
                 considered: tuple[str, ...] = (), retry_after: int | None = None,
                 www_authenticate: str | None = None) -> None:
        self.tenant = tenant
        self.source = source                      # which source yielded the tenant (None: anonymous)
        self.stamp = stamp                        # the stamp that serves; None when refused
        self.reason = reason                      # pinned | hash | geo | default | failover
        self.backends = backends                  # healthy candidates in that stamp
        self.error = error
        self.message = message
        self.placed = placed                      # the stamp placement chose, when a failover moved it
        self.placed_by = placed_by                # how `placed` was chosen (pinned | hash | geo | default)
        self.mode = mode                          # the pin's mode when not read-write: read-only | paused
        self.considered = considered              # the steps taken, filled when explain=True
        self.retry_after = retry_after
        self.www_authenticate = www_authenticate

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return "Decision(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS) + ")"

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


def forward(tenant: str | None, source: str | None, stamp: str, reason: str,
            backends: tuple[str, ...], mode: str | None, considered: tuple[str, ...]) -> Decision:
    """A forwarding Decision, built without __init__ (its thirteen parameters parsed from
    a call): this runs once per proxied request."""
    d = Decision.__new__(Decision)
    d.tenant, d.source, d.stamp, d.reason, d.backends, d.mode, d.considered = (
        tenant, source, stamp, reason, backends, mode, considered)
    d.error = d.placed = d.placed_by = d.retry_after = d.www_authenticate = None
    d.message = ""
    return d
