"""What the file watcher sees, and how the poller waits; no router process."""

import asyncio
import os
from types import MappingProxyType

import pytest

from router.config.schema import Control
from router.control.inotify import DirectoryHint
from router.control.reaper import Reaper, large_tables
from router.control.sources import FileWatcher, HttpPoller, fingerprint, replaced
from router.core.pin_table import with_changes
from tests.support.servers import eventually


def k8s_layout(root, content: bytes, version: str) -> str:
    """A ConfigMap volume: router.toml -> ..data/router.toml, ..data -> ..<version>/."""
    (root / f"..{version}").mkdir()
    (root / f"..{version}" / "router.toml").write_bytes(content)
    tmp = root / "..data_tmp"
    os.symlink(f"..{version}", tmp)
    os.replace(tmp, root / "..data")          # the atomic swap the kubelet does
    link = root / "router.toml"
    if not link.is_symlink():
        os.symlink("..data/router.toml", link)
    return str(link)


def test_an_in_place_write_of_the_same_size_is_seen(tmp_path):
    path = tmp_path / "router.toml"
    path.write_bytes(b"version = 'a'")
    before = fingerprint(str(path))
    with open(path, "r+b") as fh:             # same inode, same size
        fh.write(b"version = 'b'")
    assert fingerprint(str(path)) != before


def test_an_atomic_rename_is_seen(tmp_path):
    path = tmp_path / "router.toml"
    path.write_bytes(b"a")
    before = fingerprint(str(path))
    (tmp_path / "new").write_bytes(b"b")
    os.replace(tmp_path / "new", path)
    assert fingerprint(str(path)) != before


def test_a_configmap_symlink_swap_is_seen(tmp_path):
    link = k8s_layout(tmp_path, b"a", "v1")
    before = fingerprint(link)
    k8s_layout(tmp_path, b"a", "v2")           # even with the same content and size
    after = fingerprint(link)
    assert after != before and after[0].endswith("..v2/router.toml")


def test_renames_and_swaps_are_read_at_once_and_in_place_writes_wait_to_settle(tmp_path):
    path, other = str(tmp_path / "router.toml"), str(tmp_path / "tenants.json")
    for p in (path, other):
        open(p, "wb").write(b"a")
    start = {path: fingerprint(path), other: fingerprint(other)}
    (tmp_path / "new").write_bytes(b"b")
    os.replace(tmp_path / "new", path)
    renamed = {path: fingerprint(path), other: start[other]}
    assert replaced(start, renamed)
    with open(other, "ab") as fh:             # and the other one written in place
        fh.write(b"c")
    both = {path: renamed[path], other: fingerprint(other)}
    assert not replaced(renamed, both) and not replaced(start, both)
    assert not replaced(start, {path: None, other: start[other]})   # gone: not a new file


def test_a_configmap_swap_is_a_replacement(tmp_path):
    link = k8s_layout(tmp_path, b"a", "v1")
    before = {link: fingerprint(link)}
    k8s_layout(tmp_path, b"b", "v2")
    assert replaced(before, {link: fingerprint(link)})


def test_a_missing_file_has_no_fingerprint(tmp_path):
    assert fingerprint(str(tmp_path / "nope")) is None


def test_poll_delay_doubles_per_failure_up_to_max_backoff():
    poller = HttpPoller(lambda: Control(url="http://127.0.0.1:1/", interval=2, max_backoff=30),
                        lambda: None, on_document=None, on_poll=None)
    assert poller.delay() == 2
    delays = []
    for failures in (1, 2, 3, 10):
        poller.failures = failures
        delays.append(poller.delay())
    assert 3.2 <= delays[0] <= 4 and 6.4 <= delays[1] <= 8 and 12.8 <= delays[2] <= 16
    assert 24 <= delays[3] <= 30


def test_the_reaper_frees_a_retired_table_only_once_nobody_holds_it():
    class Retired:                             # the shape of a ValidConfig, for large_tables
        def __init__(self, size):
            self.pins = MappingProxyType({f"t{i}": "eu-1" for i in range(size)})
            self.document = {}

    async def scenario():
        tasks = set()
        reaper = Reaper(lambda coro: tasks.add(asyncio.get_running_loop().create_task(coro)))
        old = Retired(60000)
        assert [len(t) for t in large_tables(old)] == [60000]
        in_flight = old.pins                   # a request still deciding on the old snapshot
        reaper.retire(old)
        del old
        await eventually(lambda: reaper.waits >= 2, 20, "the reaper waiting for the request")
        assert len(in_flight) == 60000 and reaper.reaped == 0
        del in_flight
        await eventually(lambda: reaper.reaped == 1, 20, "the table reaped")
        small = Retired(10)
        reaper.retire(small)
        assert not tasks - {t for t in tasks if t.done()}   # small tables are left to fall

    asyncio.run(scenario())



def test_the_reaper_leaves_a_base_shared_with_pushed_pins_and_frees_it_after_a_full_reload():
    class Config:
        def __init__(self, pins):
            self.pins, self.document = pins, {}

    async def scenario():
        spawned = []
        reaper = Reaper(lambda coro: spawned.append(asyncio.get_running_loop().create_task(coro)))
        loaded = Config({f"t{i}": "eu-1" for i in range(60000)})
        pushed = Config(with_changes(loaded.pins, {"zeta": "eu-2"}))
        assert pushed.pins.base is loaded.pins
        reaper.retire(loaded, pushed)          # the push: the base is still served
        assert spawned == []
        del loaded
        reaper.retire(pushed, Config({"a": "eu-1"}))     # a full reload: nothing shares it any more
        assert len(spawned) == 1
        del pushed
        await eventually(lambda: reaper.reaped == 1, 20, "the table reaped")

    asyncio.run(scenario())

def test_a_change_made_during_a_reload_is_picked_up_right_after_it(tmp_path):
    path = tmp_path / "router.toml"
    path.write_bytes(b"a")
    intervals = iter([0.01])              # then an hour: only looking again at once can see B

    def replace(content: bytes) -> None:
        (tmp_path / "new").write_bytes(content)
        os.replace(tmp_path / "new", path)

    async def main():
        seen = []

        async def on_change():
            seen.append(path.read_bytes())
            if len(seen) == 1:
                replace(b"c")             # changed again while the first reload is applied

        watcher = FileWatcher(lambda: [str(path)], lambda: next(intervals, 3600.0), on_change)
        watcher.prime({})
        replace(b"b")
        task = asyncio.get_running_loop().create_task(watcher.run())
        await eventually(lambda: len(seen) >= 2, 20, "two reloads")
        task.cancel()
        return seen

    assert asyncio.run(main()) == [b"b", b"c"]


def _watch_until(paths, act, count):
    """Run a FileWatcher that polls once an hour; `act()` changes files; the changes seen
    (within 20 s: only an inotify wake-up can see them)."""
    async def main():
        seen = []

        async def on_change():
            seen.append(fingerprint(paths[0]))

        watcher = FileWatcher(lambda: paths, lambda: 3600.0, on_change)
        watcher.prime({})
        task = asyncio.get_running_loop().create_task(watcher.run())
        await eventually(lambda: watcher.hint and watcher.hint.watched, 20, "the watches set as it starts")
        act()
        await eventually(lambda: len(seen) >= count, 20, "the reload")
        task.cancel()
        return seen

    return asyncio.run(main())


def _has_inotify() -> bool:
    hint = DirectoryHint.open()
    if hint is None:
        return False
    hint.close()
    return True


needs_inotify = pytest.mark.skipif(not _has_inotify(), reason="no inotify on this system")


@needs_inotify
def test_inotify_has_a_rename_read_without_waiting_for_the_poll(tmp_path):
    path = tmp_path / "router.toml"
    path.write_bytes(b"a")

    def rename():
        (tmp_path / "new").write_bytes(b"b")
        os.replace(tmp_path / "new", path)

    assert len(_watch_until([str(path)], rename, 1)) == 1


@needs_inotify
def test_inotify_sees_a_configmap_swap_and_an_in_place_write(tmp_path):
    link = k8s_layout(tmp_path, b"a", "v1")
    seen = _watch_until([link], lambda: k8s_layout(tmp_path, b"b", "v2"), 1)
    assert len(seen) == 1 and seen[0][0].endswith("..v2/router.toml")

    plain = tmp_path / "plain.toml"
    plain.write_bytes(b"a")

    def write_in_place():
        with open(plain, "r+b") as fh:
            fh.write(b"b")

    assert len(_watch_until([str(plain)], write_in_place, 1)) == 1
