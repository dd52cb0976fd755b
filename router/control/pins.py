"""Single-pin edits (PUT/DELETE /tenants/{id}) on a validated config, without a full reload.

An edit checks only what it changes (the tenant id, the stamp name, the mode); the rest
of the config was validated when it was accepted and is shared. The new pin table is a
new table with one change (a copy of a small one; a large one's edits on top of its shared
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


def check_op(valid: ValidConfig, op: dict[str, Any]) -> None:
    """Raise ConfigError (path-qualified, like a full validation) if the edit cannot apply."""
    tenant = op.get("tenant")
    path = key_path("tenants", tenant) if isinstance(tenant, str) else "tenants"
    errors = []
    if not isinstance(tenant, str) or not is_valid_tenant(tenant):
        errors.append((path, "invalid tenant id: 1 to 128 of A-Z a-z 0-9 . _ -"))
    if op.get("op") == "put":
        stamp = op.get("stamp")
        names = [s.name for s in valid.config.stamps]
        if not isinstance(stamp, str) or stamp not in names:
            errors.append((f"{path}.stamp", f"unknown stamp {stamp!r} (stamps: {', '.join(names)})"))
        if op.get("mode") not in MODES:
            errors.append((f"{path}.mode", f"mode is one of {', '.join(MODES)}, not {op.get('mode')!r}"))
    elif op.get("op") != "delete":
        errors.append(("", f"unknown pin operation {op.get('op')!r}"))
    if errors:
        raise ConfigError(errors)


def is_noop(valid: ValidConfig, op: dict[str, Any]) -> bool:
    tenant = op["tenant"]
    if op["op"] == "delete":
        return tenant not in valid.pins
    mode = None if op["mode"] == "read-write" else op["mode"]
    return valid.pins.get(tenant) == op["stamp"] and valid.modes.get(tenant) == mode


def apply_op(valid: ValidConfig, op: dict[str, Any], *, base_version: str, edits: int) -> ValidConfig:
    """The config with one edit applied; `edits` counts this one. Blocks for a large table."""
    tenant = op["tenant"]
    stamp = op.get("stamp")
    mode = op.get("mode")
    pins = with_changes(valid.pins, {tenant: stamp})
    modes = dict(valid.modes)
    if stamp is None or mode == "read-write":
        modes.pop(tenant, None)
    else:
        modes[tenant] = mode
    digest = hashlib.sha256(valid.digest.encode() + b"\0" + orjson.dumps(op)).hexdigest()
    config = valid.config.model_copy(update={"version": f"{base_version}+{edits}"})
    # Nothing mutates the pins or modes once built: the request path reads them.
    return dataclasses.replace(valid, config=config, pins=pins, modes=modes, digest=digest)
