"""Persisting the last known good happens after the swap, in swap order, without holding up
the next change (router.control.reloader)."""

import asyncio
import threading
from types import SimpleNamespace

import orjson
from prometheus_client import CollectorRegistry

from router.config import load_bytes
from router.control.candidate import Candidate, bootstrap_from
from router.control.lkg import LkgStore
from router.control.metrics import ControlMetrics
from router.control.reaper import Reaper
from router.control.reloader import Reloader
from tests.control.support import ROUTING

def doc(version: str, stamp: str) -> bytes:
    return f'version = "{version}"\n'.encode() + ROUTING + f'[tenants]\nacme = "{stamp}"\n'.encode()


class FakeDataPath:
    """What the reloader needs of the data path (router.control.port): the served config, and a swap."""

    def __init__(self, valid):
        self.served = SimpleNamespace(valid=valid)

    def snapshot(self):
        return self.served

    async def apply(self, valid, edit=None):
        self.served = SimpleNamespace(valid=valid)


class GatedStore(LkgStore):
    """Writes wait for `gate`; the order of the writes is recorded."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.gate = threading.Event()
        self.saved: list[str] = []

    def save(self, meta, document, pins, modes, **kwargs):
        assert self.gate.wait(30), "the test never opened the gate"
        super().save(meta, document, pins, modes, **kwargs)
        self.saved.append(meta["digest"])


def reloader_for(tmp_path, store, registry=None) -> Reloader:
    """A Reloader serving v1 (acme on eu-1) from tmp_path/router.toml; call it in the loop."""
    path = tmp_path / "router.toml"
    bootstrap = bootstrap_from(str(path), doc("v1", "eu-1"))
    start = load_bytes(doc("v1", "eu-1"), fmt="toml", source=str(path), base_dir=str(tmp_path))
    return Reloader(FakeDataPath(start), store, ControlMetrics(registry or CollectorRegistry()), lambda: bootstrap,
                    Reaper(asyncio.get_running_loop().create_task))


async def from_watcher(reloader, path, version: str, stamp: str):
    """A file change as the watcher submits it: nobody waits for its write."""
    return await reloader.submit(Candidate("file", str(path), doc(version, stamp), "toml"), overlay=False,
                                 wait_persisted=False)


def test_a_change_is_served_while_the_one_before_is_still_being_written(tmp_path):
    path = tmp_path / "router.toml"
    store = GatedStore(str(tmp_path / "state"))

    async def main():
        reloader = reloader_for(tmp_path, store)
        first = await from_watcher(reloader, path, "v2", "eu-2")
        # v2 is served, and its write is stuck behind the gate: v3 must not wait for it.
        second = await asyncio.wait_for(from_watcher(reloader, path, "v3", "eu-1"), 30)
        assert (first.outcome, second.outcome) == ("applied", "applied")
        assert reloader.current.version == "v3"
        assert (first.persisted, second.persisted, store.saved) == (None, None, [])
        store.gate.set()
        await asyncio.wait_for(reloader.persisted(), 30)
        return first, second

    first, second = asyncio.run(main())
    assert store.saved == [first.digest, second.digest]          # in the order of the swaps
    assert (first.persisted, second.persisted) == (True, True)
    on_disk = orjson.loads((tmp_path / "state" / "lkg.json").read_bytes())
    assert on_disk["meta"]["digest"] == second.digest and on_disk["pins"] == {"acme": "eu-1"}


def test_a_push_answers_once_its_own_config_is_written(tmp_path):
    store = GatedStore(str(tmp_path / "state"))
    store.gate.set()

    async def main():
        reloader = reloader_for(tmp_path, store)
        return await reloader.submit(Candidate("admin", "admin", doc("v2", "eu-2"), "toml"), overlay=True)

    result = asyncio.run(main())
    assert result.persisted is True and store.saved == [result.digest]


class FailingOnceStore(GatedStore):
    """The first write fails as a full disk would; later ones succeed."""

    def save(self, meta, document, pins, modes, **kwargs):
        if not self.saved and not getattr(self, "failed", False):
            self.failed = True
            raise OSError(28, "No space left on device")
        super().save(meta, document, pins, modes, **kwargs)


def test_a_failed_write_is_counted_and_the_next_one_still_happens(tmp_path):
    store = FailingOnceStore(str(tmp_path / "state"))
    store.gate.set()
    registry = CollectorRegistry()

    async def main():
        reloader = reloader_for(tmp_path, store, registry)
        first = await reloader.submit(Candidate("admin", "admin", doc("v2", "eu-2"), "toml"), overlay=True)
        second = await reloader.submit(Candidate("admin", "admin", doc("v3", "eu-1"), "toml"), overlay=True)
        return first, second

    first, second = asyncio.run(main())
    assert (first.outcome, first.persisted) == ("applied", False)
    assert (second.persisted, store.saved) == (True, [second.digest])
    assert registry.get_sample_value("stamp_router_config_lkg_write_errors_total") == 1


def test_a_watcher_write_with_a_newer_config_queued_behind_it_is_skipped(tmp_path):
    path = tmp_path / "router.toml"
    store = GatedStore(str(tmp_path / "state"))
    registry = CollectorRegistry()

    async def main():
        reloader = reloader_for(tmp_path, store, registry)
        results = []
        for version, stamp in (("v2", "eu-2"), ("v3", "eu-1"), ("v4", "eu-2")):
            results.append(await from_watcher(reloader, path, version, stamp))
        # v2's write is under way (stuck at the gate); v3's waits behind it with v4 queued after.
        store.gate.set()
        await asyncio.wait_for(reloader.persisted(), 30)
        return results

    v2, v3, v4 = asyncio.run(main())
    assert store.saved == [v2.digest, v4.digest]
    assert (v2.persisted, v3.persisted, v4.persisted) == (True, None, True)
    assert registry.get_sample_value("stamp_router_config_lkg_writes_superseded_total") == 1
    on_disk = orjson.loads((tmp_path / "state" / "lkg.json").read_bytes())
    assert on_disk["meta"]["digest"] == v4.digest


def test_a_write_that_a_push_waits_for_or_a_pin_builds_on_is_never_skipped(tmp_path):
    path = tmp_path / "router.toml"
    store = GatedStore(str(tmp_path / "state"))

    async def main():
        reloader = reloader_for(tmp_path, store)
        v2 = await from_watcher(reloader, path, "v2", "eu-2")
        # v3 (watcher) is followed by a pin push, whose journal line needs v3 on disk first.
        v3 = await from_watcher(reloader, path, "v3", "eu-1")
        pin = asyncio.create_task(reloader.edit_pin({"op": "put", "tenant": "zeta", "stamp": "eu-2",
                                                       "mode": "read-write"}))
        # v4 is a push: it answers only once written, so a save behind it cannot stand in for it.
        push = asyncio.create_task(reloader.submit(Candidate("admin", "admin", doc("v4", "eu-1"), "toml"),
                                                   overlay=True))
        # Tasks start in the order they were made, and the reloader's lock is first come,
        # first served: the pin, then the push, then v5.
        v5 = await asyncio.create_task(from_watcher(reloader, path, "v5", "eu-2"))
        store.gate.set()
        results = await asyncio.wait_for(asyncio.gather(pin, push), 30)
        await asyncio.wait_for(reloader.persisted(), 30)
        return v2, v3, results, v5

    v2, v3, (pin, v4), v5 = asyncio.run(main())
    assert pin.outcome == "applied"
    assert store.saved == [v2.digest, v3.digest, v4.digest, v5.digest]
    assert (v3.persisted, v4.persisted) == (True, True)
