"""Background table work steps aside while a candidate is validated (router.control.foreground)."""

import threading

from router.control.bulk import drain
from router.control.foreground import Foreground


def run_in_thread(fn) -> threading.Event:
    done = threading.Event()
    threading.Thread(target=lambda: (fn(), done.set()), daemon=True).start()
    return done


def test_step_aside_returns_at_once_when_nothing_is_validated():
    fg = Foreground()
    fg.background()()
    assert fg.deferred_seconds == 0.0 and not fg.busy


def test_a_background_job_waits_until_validation_is_over():
    fg = Foreground()
    with fg.validating():
        assert fg.busy
        done = run_in_thread(fg.background())
        # A job that did not wait would be done by now; one that waits is not, however slow the machine.
        assert not done.wait(0.3)
        with fg.validating():             # two validations overlap: the job waits for both
            pass
        assert fg.busy and not done.is_set()
    assert done.wait(10)
    assert not fg.busy and fg.deferred_seconds > 0


def test_a_job_is_held_back_no_longer_than_its_budget():
    fg = Foreground(max_defer=0.05)
    with fg.validating():
        step = fg.background()
        done = run_in_thread(lambda: (step(), step(), step()))
        assert done.wait(10)              # still validating, the budget is spent: the job goes on
        assert fg.busy and 0.05 <= fg.deferred_seconds


def test_drain_steps_aside_between_slices():
    calls = []
    table = {f"t{i}": i for i in range(10_000)}
    drain(table, lambda: calls.append(len(table)))
    assert table == {} and calls == [10_000, 10_000 - 4096, 10_000 - 2 * 4096]
