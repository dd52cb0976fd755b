"""A large pin table with the pins pushed since its last full load kept on top of it.

A pin push (PUT/DELETE /tenants/{id}) must not change the table a request in flight holds,
so it used to copy the whole table with the one change: for a million pins that copy is
one C call of about 50 ms, during which no request moves. A PinTable instead shares the
big `base` dict between configs and copies only `edits`, the pins pushed since that base
was loaded (a stamp name, or None where a pushed delete removed a base pin). Reads look
in `edits` first. Past `COMPACT_EDITS` edits the next push folds them into a new plain
dict, paying the copy once per that many pushes; a full reload starts from a plain dict.

Small tables stay plain dicts: copying them costs less than a layer on every read.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

# Below this many pins a push copies the table: well under a millisecond.
LAYER_MIN = 50_000
# Edits kept on top of a base before they are folded into a new plain dict.
COMPACT_EDITS = 10_000

_MISSING: Any = object()


class PinTable(Mapping[str, str]):
    """tenant -> stamp: `base` with `edits` on top. Immutable, like a plain pin dict."""

    __slots__ = ("base", "edits", "_len")

    def __init__(self, base: dict[str, str], edits: dict[str, str | None], length: int) -> None:
        self.base = base
        self.edits = edits
        self._len = length

    def get(self, key: str, default: Any = None) -> Any:
        value = self.edits.get(key, _MISSING)
        if value is _MISSING:
            return self.base.get(key, default)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        value = self.edits.get(key, _MISSING)  # type: ignore[call-overload]
        return key in self.base if value is _MISSING else value is not None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        edits = self.edits
        for key in self.base:
            if key not in edits:
                yield key
        for key, value in edits.items():
            if value is not None:
                yield key

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        edits = self.edits
        for pair in self.base.items():
            if pair[0] not in edits:
                yield pair
        for key, value in edits.items():
            if value is not None:
                yield key, value

    def __repr__(self) -> str:
        return f"PinTable({len(self.base)} pins in the base, {len(self.edits)} edits, {self._len} in all)"


def with_changes(pins: Mapping[str, str], changes: Mapping[str, str | None]) -> Mapping[str, str]:
    """`pins` with `changes` applied (None deletes), leaving `pins` as it was.

    A plain dict for a small table, or when the edits are due to be folded in (one copy of
    the table); otherwise a PinTable sharing the big base.
    """
    if isinstance(pins, PinTable):
        base, edits, length = pins.base, dict(pins.edits), len(pins)
    elif len(pins) >= LAYER_MIN and type(pins) is dict:
        base, edits, length = pins, {}, len(pins)
    else:
        out = dict(pins)
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out
    for key, value in changes.items():
        was = edits[key] is not None if key in edits else key in base
        length += (value is not None) - was
        if value is None and key not in base:
            edits.pop(key, None)          # a pushed pin taken back: nothing of the base to hide
        else:
            edits[key] = value
    if len(edits) > COMPACT_EDITS:
        out = dict(base)                  # the one copy, once per COMPACT_EDITS pushes
        for key, value in edits.items():
            if value is None:
                del out[key]
            else:
                out[key] = value
        return out
    return PinTable(base, edits, length)
