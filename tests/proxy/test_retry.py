"""router.proxy.retry: the rules in its docstring, as tables."""

import pytest

from router.proxy.retry import Next, after_loss, may_retry, replayable


@pytest.mark.parametrize("tried, attempts, candidates, budget, expected", [
    (0, 2, 2, True, True),
    (0, 2, 1, True, False),      # no other backend
    (1, 2, 2, True, False),      # both tried
    (1, 2, 3, True, True),
    (2, 2, 5, True, False),      # retry.attempts reached
    (0, 2, 2, False, False),     # over the budget
    (0, 0, 2, True, False),      # retries off
])
def test_may_retry(tried, attempts, candidates, budget, expected):
    assert may_retry(tried, attempts, candidates, budget) is expected


@pytest.mark.parametrize("held, method, sent, expected", [
    (True, b"GET", True, True),
    (True, b"PUT", True, True),
    (True, b"POST", True, False),     # not idempotent and the backend had all of it
    (True, b"POST", False, True),     # the backend never had the whole request
    (False, b"GET", True, False),     # the body outgrew the replay limit
    (True, b"PATCH", True, False),
])
def test_replayable(held, method, sent, expected):
    assert replayable(held, method, sent) is expected


@pytest.mark.parametrize("started, stale, safe, kind, allowed, expected", [
    (True, True, True, "reset", True, Next.CUT),
    (False, True, True, "reset", False, Next.RESEND),
    (False, True, True, "timeout", True, Next.RETRY),
    (False, True, True, "protocol", False, Next.REFUSE),
    (False, False, True, "reset", True, Next.RETRY),
    (False, False, True, "reset", False, Next.REFUSE),
    (False, True, False, "reset", True, Next.REFUSE),
])
def test_after_loss(started, stale, safe, kind, allowed, expected):
    assert after_loss(started, stale, safe, kind, allowed) is expected
