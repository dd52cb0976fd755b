"""router.process.listeners: a listening socket set per worker slot, on real loopback sockets."""

import socket

import pytest

from router.process.listeners import SlotListeners, open_listeners
from tests.support.servers import free_port


@pytest.fixture
def address():
    return f"127.0.0.1:{free_port()}"


def test_each_slot_has_its_own_set_on_the_same_port(address):
    listeners = SlotListeners.open(address, 16, 3)
    try:
        assert len(listeners.sets) == 3
        assert {s.getsockname() for s in listeners.all()} == {("127.0.0.1", int(address.rsplit(":", 1)[1]))}
        assert [listeners.for_slot(i, 3) for i in range(3)] == listeners.sets
        assert listeners.others(0, 3) == [s.fileno() for s in listeners.sets[1] + listeners.sets[2]]
    finally:
        listeners.close()


def test_fewer_workers_than_sets_serve_every_set(address):
    # A reload lowered the worker count: no set is closed (that would reset its queue).
    listeners = SlotListeners.open(address, 16, 4)
    try:
        assert listeners.for_slot(0, 2) == listeners.sets[0] + listeners.sets[2]
        assert listeners.for_slot(1, 2) == listeners.sets[1] + listeners.sets[3]
        listeners.ensure(2)
        assert len(listeners.sets) == 4
    finally:
        listeners.close()


def test_a_set_that_cannot_be_opened_leaves_the_slots_sharing(address, caplog):
    # Taken over from a router whose one listener has no SO_REUSEPORT: no second socket
    # can join the port, so both workers accept on the one there is.
    plain = open_listeners(address, 16, reuse_port=False)
    listeners = SlotListeners(address, 16, [plain])
    try:
        listeners.ensure(2)
        assert len(listeners.sets) == 1
        assert listeners.for_slot(0, 2) == listeners.for_slot(1, 2) == plain
        assert listeners.others(1, 2) == []
        assert "2 worker(s) share 1" in caplog.text
    finally:
        listeners.close()


def test_without_reuse_port_a_port_in_use_is_refused(address):
    other = open_listeners(address, 16, reuse_port=True)
    try:
        with pytest.raises(OSError):
            SlotListeners.open(address, 16, 2, exclusive=True)
        joined = SlotListeners.open(address, 16, 2, exclusive=False)      # listen.reuse_port = true
        joined.close()
    finally:
        for sock in other:
            sock.close()


def test_no_http_listener_has_no_sets():
    listeners = SlotListeners.open(None, 16, 2)
    assert listeners.sets == [] and listeners.for_slot(0, 2) == [] and listeners.others(0, 2) == []


def test_connections_reach_a_set_with_no_worker_yet(address):
    # What a dead worker's slot does until its replacement accepts: the kernel queues.
    listeners = SlotListeners.open(address, 16, 2)
    try:
        host, port = address.rsplit(":", 1)
        clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(8)]
        accepted = 0
        for sock in listeners.all():
            sock.setblocking(True)
            sock.settimeout(0.5)
            while True:
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    break
                conn.close()
                accepted += 1
        assert accepted == 8
        for c in clients:
            c.close()
    finally:
        listeners.close()
