"""The registry in-process, without probes: the hot path, config swaps, ejection timers."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from router.config import load_bytes
from router.core import build_snapshot
from router.health import HealthRegistry
from router.health.probes import ProbeResult
from tests.support.servers import eventually

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"


def snap(backends=(A, B), health=True, outlier="consecutive_failures = 2\nbase_ejection = 0.05", panic=0.0):
    text = (f'[routing]\nsources = ["header"]\n[outlier]\n{outlier}\n[[stamps]]\nname = "eu-1"\nregion = "eu"\n'
            f'backends = {list(backends)!r}\npanic_threshold = {panic}\n'
            f'health = {{ enabled = {str(health).lower()} }}\n').replace("'", '"')
    return build_snapshot(load_bytes(text.encode(), fmt="toml", source="test"), loaded_at=0.0)


def probe(reg: HealthRegistry, address: str, ok: bool) -> None:
    reg._on_probe(address, ProbeResult(ok, 200 if ok else 503, None if ok else "status 503", time.time(), 0.001))


def test_the_hot_path_returns_one_precomputed_tuple():
    reg = HealthRegistry(CollectorRegistry())
    s = snap()
    reg.sync(s)
    view = s.stamps["eu-1"]
    first = reg.healthy_backends(view)
    assert first == (A, B)
    reg.report(A, True)
    assert reg.healthy_backends(view) is first      # nothing changed: nothing rebuilt


def test_a_swap_keeps_the_state_of_backends_that_stay():
    reg = HealthRegistry(CollectorRegistry())
    reg.sync(snap((A, B)))
    probe(reg, A, False)
    s2 = snap((A, C))
    reg.sync(s2)
    assert reg.healthy_backends(s2.stamps["eu-1"]) == (C,)    # A still down, C new and unknown
    assert B not in reg.states
    status = reg.stamp_status(s2)[0]["backends"]
    assert [b["probe"] for b in status] == ["down", "unknown"]
    assert status[0]["last_probe"]["error"] == "status 503"


def test_turning_checks_off_brings_a_down_backend_back():
    reg = HealthRegistry(CollectorRegistry())
    reg.sync(snap())
    probe(reg, A, False)
    s2 = snap(health=False)
    reg.sync(s2)
    assert reg.healthy_backends(s2.stamps["eu-1"]) == (A, B)
    assert reg.stamp_status(s2)[0]["backends"][0]["last_probe"] is None


def test_an_ejection_ends_by_its_timer():
    async def scenario():
        reg = HealthRegistry(CollectorRegistry())
        s = snap()
        reg.sync(s)
        view = s.stamps["eu-1"]
        reg.report(A, False, "connect")
        reg.report(A, False, "reset")
        assert reg.healthy_backends(view) == (B,)
        assert reg.stamp_status(s)[0]["backends"][0]["ejected_until"] > time.time()
        deadline = time.monotonic() + 2.0
        while reg.healthy_backends(view) != (A, B):
            assert time.monotonic() < deadline, "the ejection timer never fired"
            await asyncio.sleep(0.01)
        await reg.close()

    asyncio.run(scenario())


def test_outcomes_for_unknown_backends_are_ignored():
    reg = HealthRegistry(CollectorRegistry())
    reg.sync(snap())
    reg.report("192.0.2.9:80", False, "connect")
    assert set(reg.states) == {A, B}


def test_panic_counts_attempts_while_in_panic_across_a_swap():
    D = "10.0.0.4:80"
    reg = HealthRegistry(CollectorRegistry())
    s = snap((A, B, C), panic=0.5)
    reg.sync(s)
    probe(reg, A, False)
    probe(reg, B, False)                            # 1 of 3 healthy < 0.5
    assert reg.healthy_backends(s.stamps["eu-1"]) == (A, B, C) and reg.panic == {"eu-1"}
    reg.report(A, True)
    reg.report(C, False, "5xx")
    assert reg.panic_routed == {"eu-1": 2}
    s2 = snap((A, B, D), panic=0.5)                 # still 1 of 3, with a new backend
    reg.sync(s2)
    reg.report(D, True)
    reg.report(C, True)                             # gone from the stamp: not counted
    assert reg.panic_routed == {"eu-1": 3}
    probe(reg, A, True)
    probe(reg, A, True)                             # rise: 2 of 3 healthy
    assert reg.panic == set() and reg.healthy_backends(s2.stamps["eu-1"]) == (A, D)
    reg.report(A, True)
    assert reg.panic_routed == {"eu-1": 3}


async def _hanging_server():
    """Accepts, reads, never answers: every probe to it times out."""
    async def serve(reader, writer):
        await reader.read(65536)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def probed(address: str, timeout: float = 0.2):
    text = (f'[routing]\nsources = ["header"]\n[[stamps]]\nname = "eu-1"\nregion = "eu"\nbackends = ["{address}"]\n'
            f'health = {{ interval = 0.2, timeout = {timeout}, fall = 1 }}\n')
    return build_snapshot(load_bytes(text.encode(), fmt="toml", source="test"), loaded_at=0.0)


def test_the_first_round_waits_for_a_probe_that_times_out():
    async def scenario():
        server, address = await _hanging_server()
        reg = HealthRegistry(CollectorRegistry())
        reg.sync(probed(address))
        await reg.start()
        assert reg.first_round_done is False
        await eventually(lambda: reg.first_round_done, 0.2 + 2.0, "the first round")
        assert reg.states[address].probe.value == "down"
        assert reg._last_probe[address].error == "timeout"
        await reg.close()
        server.close()

    asyncio.run(scenario())


def test_the_first_round_is_bounded_even_when_a_probe_never_ends(monkeypatch):
    async def stuck(self, url, timeout, loop):
        await asyncio.sleep(3600)               # overshoots its own timeout, somehow

    monkeypatch.setattr("router.health.probes.Prober._probe", stuck)
    monkeypatch.setattr("router.health.registry.FIRST_ROUND_GRACE", 0.1)

    async def scenario():
        reg = HealthRegistry(CollectorRegistry())
        reg.sync(probed("127.0.0.1:9"))
        await reg.start()
        assert reg.first_round_done is False
        await eventually(lambda: reg.first_round_done, 0.2 + 0.1 + 2.0, "the first round's deadline")
        assert reg._last_probe == {}
        await reg.close()

    asyncio.run(scenario())
