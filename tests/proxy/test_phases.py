"""router.proxy.lifecycle (the connection phases) and router.proxy.flow: the tables and rules, without sockets."""

import pytest

from router.proxy.flow import FlowControl, Pause
from router.proxy.lifecycle import EXPIRY, ROWS, TABLE, Deadline, Event, Expiry, Phase, step, transition_rows

W, B, I, T = Phase.WAIT_HEAD, Phase.BUSY, Phase.IDLE, Phase.TUNNEL


@pytest.mark.parametrize("phase, event, expected", [
    (I, Event.REQUEST_BEGUN, (W, Deadline.HEADER)),     # rule 3
    (W, Event.REQUEST_BEGUN, (W, Deadline.KEEP)),       # rule 1: the deadline from accept runs on
    (B, Event.REQUEST_BEGUN, (B, Deadline.KEEP)),       # rule 4: pipelining
    (W, Event.HEAD_READ, (B, Deadline.NONE)),           # rule 2
    (B, Event.HEAD_READ, (B, Deadline.NONE)),
    (B, Event.ANSWERED_ALL, (I, Deadline.IDLE)),        # rule 3
    (W, Event.ANSWERED_ALL, (I, Deadline.IDLE)),        # answered while the next head is partial
    (B, Event.UPGRADED, (T, Deadline.NONE)),            # rule 5
    (T, Event.ANSWERED_ALL, (T, Deadline.KEEP)),
    (T, Event.REQUEST_BEGUN, (T, Deadline.KEEP)),
])
def test_transitions(phase, event, expected):
    assert step(phase, event) == expected


def test_the_rows_are_the_table():
    for phase in Phase:
        for event in Event:
            assert ROWS[phase][event] == TABLE.get((phase, event), (phase, Deadline.KEEP))
    assert len(list(transition_rows())) == len(TABLE)


def test_only_waiting_and_idle_connections_have_a_deadline_to_miss():
    assert EXPIRY == {W: Expiry.ANSWER_408, B: Expiry.NEVER, I: Expiry.CLOSE, T: Expiry.NEVER}
    # and no transition into BUSY or TUNNEL starts one
    for (phase, event), (target, deadline) in TABLE.items():
        if target in (B, T):
            assert deadline is Deadline.NONE


def test_reading_resumes_only_when_every_reason_is_gone():
    flow = FlowControl()
    assert flow.pause(Pause.PIPELINE) is True           # free until now: pause the transport
    assert flow.pause(Pause.PEER_FULL) is False
    assert flow.pause(Pause.PIPELINE) is False          # idempotent
    assert flow.resume(Pause.PIPELINE) is False         # PEER_FULL still holds it
    assert flow.resume(Pause.PIPELINE) is False         # clearing what is not set changes nothing
    assert flow.reading_paused
    assert flow.resume(Pause.PEER_FULL) is True         # now free: resume the transport
    assert not flow.reading_paused


def test_several_reasons_clear_at_once():
    flow = FlowControl()
    flow.pause(Pause.UPGRADE)
    flow.pause(Pause.PENDING)
    assert flow.resume(Pause.UPGRADE | Pause.PIPELINE | Pause.PENDING) is True
    assert flow.reasons == 0


def test_writing_paused_is_its_own_state():
    flow = FlowControl()
    flow.writing_paused()
    assert flow.write_paused and not flow.reading_paused
    flow.writing_resumed()
    assert not flow.write_paused
