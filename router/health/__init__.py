"""Backend health: active probes and passive outlier detection, feeding the core's HealthView."""

from router.health.registry import HealthRegistry

__all__ = ["HealthRegistry"]
