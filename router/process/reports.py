"""Reports: what a worker tells the supervisor without being asked, one kind per concern.

Every REPORT_INTERVAL a worker asks each of its reporters for a payload (None: nothing to
say) and sends the ones it got as one REPORT message `{"r": {kind: payload}}`. The
supervisor hands each payload to the handler registered for its kind, with the worker's
slot. A new concern (per-tenant in-flight counts, say) is a new ReportKind, a reporter in
the worker and a handler in the supervisor; the channel does not change.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

# Often enough for a health transition or a rate-limit share to follow traffic within a
# tenth of a second; each report is one small message per worker.
REPORT_INTERVAL = 0.1


class ReportKind(enum.StrEnum):
    PASSIVE = "passive"      # upstream outcomes for the supervisor's ejection decision
    COUNTERS = "counters"    # the worker's metrics, cumulative (about once a second, and at exit)
    DEMAND = "demand"        # tenant -> requests seen since the last report (rate-limit shares)
    UNKNOWN_KID = "unknown_kid"  # JWT key holders an unknown kid asks to refetch now


Reporter = Callable[[], Any]                     # worker side: payload or None
Reporters = dict[ReportKind, Reporter]
ReportHandler = Callable[[int, Any], None]       # supervisor side: (worker slot, payload)
