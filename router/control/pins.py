"""Pin edits on a validated config, without a full reload: one pin (PUT/DELETE
/tenants/{id}) or a batch of them applied as one edit (PATCH /tenants).

An edit checks only what it changes (each tenant id, stamp name and mode); the rest of
the config was validated when it was accepted and is shared. The new pin table is a new
table with the changes (a copy of a small one; a large one's edits on top of its shared
base: router.core.pin_table), so the snapshot a request holds never changes under it.

Each edit gets a digest chained from the previous one and the edit itself, and a version
label `<base>+<n>` (n edits since the config came from its source), so GET /config shows
that this router serves local changes on top of a known version; replaying the same
edits on the same base (a restart from the last known good journal) gives the same
digest and label.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, get_args

import orjson

from router.config import ConfigError, ValidConfig
from router.config.schema import PinMode
from router.config.validate import key_path
from router.core.pin_table import with_changes
from router.core.tenant import is_valid_tenant

MODES = get_args(PinMode)


def pin_op(tenant: str, stamp: str | None, mode: str | None = None) -> dict[str, Any]:
    """The journal form of an edit: put (stamp given) or delete (stamp None)."""
    if stamp is None:
        return {"op": "delete", "tenant": tenant}
    return {"op": "put", "tenant": tenant, "stamp": stamp, "mode": mode or "read-write"}


def batch_op(pins: dict[str, Any]) -> dict[str, Any]:
    """The journal form of a batch (PATCH /tenants): tenant -> None (delete) or
    {"stamp": NAME, "mode": MODE}, applied as one edit."""
    return {"op": "batch", "pins": pins}


def journal_pin(value: Any) -> Any:
    """A pin as written by a user (a stamp name or {"stamp", "mode"}) in its journal form,
    {"stamp", "mode"}; None stays None (a delete). Anything else is left as it came, for
    check_op to report beside every other error."""
    if isinstance(value, str):
        return {"stamp": value, "mode": "read-write"}
    if isinstance(value, dict) and "stamp" in value:
        return {**value, "mode": value.get("mode") or "read-write"}
    return value


# A batch names at most this many errors; the rest are summed up in one line.
MAX_BATCH_ERRORS = 200


def check_op(valid: ValidConfig, op: dict[str, Any]) -> None:
    """Raise ConfigError (path-qualified, like a full validation) if the edit cannot apply."""
    names = [s.name for s in valid.config.stamps]
    errors: list[tuple[str, str]] = []
    if op.get("op") == "batch":
        pins = op.get("pins")
        if not isinstance(pins, dict):
            raise ConfigError([("tenants", "a batch is an object of tenant -> pin or null")])
        for tenant, pin in pins.items():
            if pin is None or (isinstance(pin, dict) and set(pin) <= {"stamp", "mode"}):
                _check_pin(tenant, "delete" if pin is None else "put", pin and pin.get("stamp"),
                           pin and pin.get("mode"), names, errors)
                continue
            _check_pin(tenant, "delete", None, None, names, errors)     # the id, at least
            errors.append((key_path("tenants", tenant), 'a pin is a stamp name, {"stamp": "NAME", "mode": '
                                                        '"read-write" | "read-only" | "paused"}, or null to remove it'))
        if len(errors) > MAX_BATCH_ERRORS:
            errors[MAX_BATCH_ERRORS:] = [("tenants", f"... and {len(errors) - MAX_BATCH_ERRORS} more errors")]
    elif op.get("op") in ("put", "delete"):
        _check_pin(op.get("tenant"), op["op"], op.get("stamp"), op.get("mode"), names, errors)
    else:
        errors.append(("", f"unknown pin operation {op.get('op')!r}"))
    if errors:
        raise ConfigError(errors)


def _check_pin(tenant: Any, kind: str, stamp: Any, mode: Any, names: list[str],
               errors: list[tuple[str, str]]) -> None:
    path = key_path("tenants", tenant) if isinstance(tenant, str) else "tenants"
    if not isinstance(tenant, str) or not is_valid_tenant(tenant):
        errors.append((path, "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -"))
    if kind == "put":
        if not isinstance(stamp, str) or stamp not in names:
            errors.append((f"{path}.stamp", f"unknown stamp {stamp!r} (stamps: {', '.join(names)})"))
        if mode not in MODES:
            errors.append((f"{path}.mode", f"mode is one of {', '.join(MODES)}, not {mode!r}"))


def changes_of(op: dict[str, Any]) -> dict[str, tuple[str, str] | None]:
    """tenant -> (stamp, mode), or None for a delete, of a checked edit."""
    if op["op"] == "batch":
        return {t: None if pin is None else (pin["stamp"], pin["mode"]) for t, pin in op["pins"].items()}
    if op["op"] == "delete":
        return {op["tenant"]: None}
    return {op["tenant"]: (op["stamp"], op["mode"])}


def changes_as_pins(op: dict[str, Any]) -> dict[str, Any]:
    """An edit as a batch's pins: tenant -> {"stamp", "mode"}, or None for a delete."""
    if op["op"] == "batch":
        return dict(op["pins"])
    if op["op"] == "delete":
        return {op["tenant"]: None}
    return {op["tenant"]: {"stamp": op["stamp"], "mode": op["mode"]}}


def is_noop(valid: ValidConfig, op: dict[str, Any]) -> bool:
    for tenant, pin in changes_of(op).items():
        if pin is None:
            if tenant in valid.pins:
                return False
        elif valid.pins.get(tenant) != pin[0] or valid.modes.get(tenant) != (None if pin[1] == "read-write" else pin[1]):
            return False
    return True


def deletes(valid: ValidConfig, op: dict[str, Any]) -> int:
    """How many pins the edit removes (for the drop guard on batches)."""
    return sum(1 for tenant, pin in changes_of(op).items() if pin is None and tenant in valid.pins)


def apply_op(valid: ValidConfig, op: dict[str, Any], *, base_version: str, edits: int,
             label: str | None = None) -> ValidConfig:
    """The config with one edit (a pin, or a batch of them) applied; `edits` counts this one,
    unless `label` names the version it makes. Blocks for a large table."""
    changes = changes_of(op)
    pins = with_changes(valid.pins, {t: None if pin is None else pin[0] for t, pin in changes.items()})
    modes = dict(valid.modes)
    for tenant, pin in changes.items():
        if pin is None or pin[1] == "read-write":
            modes.pop(tenant, None)
        else:
            modes[tenant] = pin[1]
    digest = hashlib.sha256(valid.digest.encode() + b"\0" + orjson.dumps(op)).hexdigest()
    config = valid.config.model_copy(update={"version": label or f"{base_version}+{edits}"})
    # Nothing mutates the pins or modes once built: the request path reads them.
    return dataclasses.replace(valid, config=config, pins=pins, modes=modes, digest=digest)
