# cython: annotation_typing=False
"""Whether a failed upstream attempt may be made again, and how.

Pure rules over what the exchange knows of the attempt:

1. A connection that could not be opened sent nothing: another backend of the stamp is
   always safe to try, within retry.attempts, while the stamp has a backend not tried
   yet, and within the retry budget (retry.budget of the requests in flight, at least 3).
2. A pooled connection that closed before any byte of the answer, on its first use since
   it was pooled, most likely had been closed by the backend before the request reached
   it. The request goes again on a fresh connection to the same backend, without
   counting as a retry, if it is safe to repeat (rule 3) and the loss was a plain reset.
3. A request is safe to send again while everything sent is still held (the body was at
   most the replay limit) and either its method is idempotent (RFC 9110 9.2.2) or the
   backend never had the whole request to act on.
4. Otherwise a lost attempt is retried on another backend under rule 1's limits, if it is
   safe to repeat; if not, the client gets the error.
5. Once part of the response is with the client, nothing is retried: the answer is cut
   short (the client connection closes).
"""

from __future__ import annotations

from enum import IntEnum

# RFC 9110 9.2.2.
IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class Next(IntEnum):
    RESEND = 0      # rule 2: the same backend, a fresh connection, not a retry
    RETRY = 1       # rules 1 and 4: another backend of the stamp
    REFUSE = 2      # answer with the error
    CUT = 3         # rule 5: close the client connection


def may_retry(tried: int, attempts: int, candidates: int, within_budget: bool) -> bool:
    """Rule 1: `tried` backends failed already, this one included not yet."""
    return tried < attempts and candidates > tried + 1 and within_budget


def replayable(replay_held: bool, method: bytes, request_sent: bool) -> bool:
    """Rule 3."""
    return replay_held and (method in IDEMPOTENT or not request_sent)


def after_loss(response_started: bool, stale_reuse: bool, safe_to_repeat: bool, kind: str,
               retry_allowed: bool) -> Next:
    """What follows an upstream connection lost before its response ended (rules 2-5)."""
    if response_started:
        return Next.CUT
    if stale_reuse and safe_to_repeat and kind == "reset":
        return Next.RESEND
    if safe_to_repeat and retry_allowed:
        return Next.RETRY
    return Next.REFUSE
