# cython: annotation_typing=False
"""Flow control of one connection's reading, shared by the client and upstream sides.

Reading from a peer pauses for named reasons and resumes when the last of them is gone:
a client connection can be paused at once because a second pipelined request is queued,
because the backend's socket buffer is full and because a request body is held while
the upstream connection opens. Each reason is set and cleared by whoever owns it, so
one clearing never resumes a connection another still holds paused. Setting a reason
twice, or clearing one that is not set, changes nothing.

The object keeps the state only; the protocol that owns the transport acts on what the
calls return (True: the connection has just turned paused, or just turned free), so
the rules here are testable without a socket.
"""

from __future__ import annotations

from enum import IntFlag


class Pause(IntFlag):
    """Why reading from a connection is paused."""

    PIPELINE = 1      # client: more than one request queued (answers go out in order)
    PEER_FULL = 2     # the other side's write buffer is over its high-water mark
    PENDING = 4       # client: a request body held while the upstream connection opens
    UPGRADE = 8       # client: bytes after an Upgrade request, held until the backend's 101


class FlowControl:
    """Pause reasons of one connection's reading, and whether its writing is paused."""

    __slots__ = ("reasons", "write_paused")

    def __init__(self) -> None:
        self.reasons = 0
        self.write_paused = False

    @property
    def reading_paused(self) -> bool:
        return self.reasons != 0

    def pause(self, reason: Pause) -> bool:
        """Add a reason; True when reading was free until now (pause the transport)."""
        was = self.reasons
        self.reasons = was | reason
        return was == 0

    def resume(self, reason: Pause) -> bool:
        """Clear reasons; True when that freed reading (resume the transport)."""
        was = self.reasons
        if not was & reason:
            return False
        self.reasons = was & ~reason
        return self.reasons == 0

    def writing_paused(self) -> None:
        self.write_paused = True

    def writing_resumed(self) -> None:
        self.write_paused = False
