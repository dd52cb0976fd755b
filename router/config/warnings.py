"""Config warnings: what is valid but probably not meant. `stamp-router check` prints
them after "ok" (exit status 0) and the router logs them when it takes a config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.config.load import ValidConfig


def config_warnings(valid: "ValidConfig") -> list[tuple[str, str]]:
    cfg = valid.config
    warnings: list[tuple[str, str]] = []
    placement = cfg.placement
    residencies = sorted({s.residency_name for s in cfg.stamps})
    if cfg.routing.unpinned == "hash" and len(residencies) > 1 \
            and not placement.residency_from and placement.default_residency is None:
        warnings.append(("placement", "tenants without a pin are placed by hash over the active stamps of every "
                         f"residency ({', '.join(map(repr, residencies))}), so one can land outside its own: set "
                         "placement.residency_from or placement.default_residency (docs/placement.md), "
                         "or routing.unpinned = \"reject\""))
    return warnings
