# cython: annotation_typing=False
"""The lifecycle of a client connection, as a table.

The rules kept here
-------------------
1. A connection starts in WAIT_HEAD with the request-header deadline
   (timeouts.request_header) running from accept: a client that connects and sends
   nothing, or only part of a head, is cut off.
2. Reading a complete head makes it BUSY, with no deadline of its own: while a request is
   being answered the exchange's upstream deadline is the one that runs.
3. When the last queued request has been answered and the connection stays open, it is
   IDLE with the keep-alive deadline (timeouts.idle). The first byte of the next request
   turns it back to WAIT_HEAD, and the header deadline runs from that byte.
4. A request that begins while another is being answered (pipelining) changes nothing:
   the connection stays BUSY until every queued request has been answered.
5. An upgrade (the backend's 101) makes it a TUNNEL: bytes flow until either side closes,
   with no deadline.
6. At its deadline a connection in WAIT_HEAD whose request has begun is answered 408 and
   closed; otherwise (no byte of a request yet, or IDLE) it is closed without a word.
   BUSY and TUNNEL have no deadline to miss.

Pairs not in the table leave the phase and its deadline as they are.
`transition_rows()` renders the table for the docs and the tests.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Iterator, Mapping


class Phase(IntEnum):
    WAIT_HEAD = 0
    BUSY = 1
    IDLE = 2
    TUNNEL = 3


class Event(IntEnum):
    REQUEST_BEGUN = 0     # the parser saw the first byte of a request
    HEAD_READ = 1         # a request head is complete and queued
    ANSWERED_ALL = 2      # the last queued request was answered; the connection stays open
    UPGRADED = 3          # the backend switched protocols (101)


class Deadline(IntEnum):
    """What a transition does to the connection's deadline."""

    KEEP = 0              # leave it running
    NONE = 1              # no deadline
    HEADER = 2            # now + timeouts.request_header
    IDLE = 3              # now + timeouts.idle


class Expiry(IntEnum):
    """What the deadline sweep does to a connection past its deadline (rule 6)."""

    NEVER = 0
    ANSWER_408 = 1        # 408 when a request has begun, else close quietly
    CLOSE = 2


_W, _B, _I, _T = Phase.WAIT_HEAD, Phase.BUSY, Phase.IDLE, Phase.TUNNEL
TABLE: Mapping[tuple[Phase, Event], tuple[Phase, Deadline]] = {
    (_I, Event.REQUEST_BEGUN): (_W, Deadline.HEADER),        # rule 3
    (_W, Event.HEAD_READ): (_B, Deadline.NONE),              # rule 2
    (_B, Event.HEAD_READ): (_B, Deadline.NONE),              # rule 4: pipelined heads
    (_I, Event.HEAD_READ): (_B, Deadline.NONE),
    (_W, Event.ANSWERED_ALL): (_I, Deadline.IDLE),           # rule 3
    (_B, Event.ANSWERED_ALL): (_I, Deadline.IDLE),
    (_I, Event.ANSWERED_ALL): (_I, Deadline.IDLE),
    (_W, Event.UPGRADED): (_T, Deadline.NONE),               # rule 5
    (_B, Event.UPGRADED): (_T, Deadline.NONE),
    (_I, Event.UPGRADED): (_T, Deadline.NONE),
}

EXPIRY: Mapping[Phase, Expiry] = {
    _W: Expiry.ANSWER_408, _B: Expiry.NEVER, _I: Expiry.CLOSE, _T: Expiry.NEVER,
}

# The table as rows indexed [phase][event], for the data path: two list indexings per
# transition instead of building and hashing a tuple key.
ROWS: list[list[tuple[Phase, Deadline]]] = [
    [TABLE.get((phase, event), (phase, Deadline.KEEP)) for event in Event] for phase in Phase
]


def step(phase: Phase, event: Event) -> tuple[Phase, Deadline]:
    """The phase after `event`, and what becomes of the deadline."""
    return ROWS[phase][event]


def transition_rows() -> Iterator[tuple[str, str, str, str]]:
    """(phase, event, next phase, deadline) for every listed transition."""
    for (phase, event), (target, deadline) in TABLE.items():
        yield phase.name, event.name, target.name, deadline.name
