"""The sans-IO core: pure routing decisions over an immutable snapshot.

Nothing here opens a socket, reads a clock or imports asyncio; `now` is an argument.
tests/core/test_sans_io.py keeps it so.
"""

from router.core.decide import decide
from router.core.decision import Decision
from router.core.health_view import ALL_HEALTHY, AllHealthy, HealthView
from router.core.snapshot import Snapshot, StampView, build_snapshot
from router.core.sources import Facts, RequestFacts, TenantRejected

__all__ = ["ALL_HEALTHY", "AllHealthy", "Decision", "Facts", "HealthView", "RequestFacts", "Snapshot",
           "StampView", "TenantRejected", "build_snapshot", "decide"]
