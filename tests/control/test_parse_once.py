"""The local config file is parsed once per read, off the event loop: at start and on
each reload, the same parse gives the bootstrap sections and the routing config."""

import asyncio
import threading

from prometheus_client import CollectorRegistry

import router.control.candidate as candidate
from router.control import ControlPlane, choose_start
from router.core.snapshot import build_snapshot
from tests.control.test_startup import STAMPS, write


class DataPath:
    """The port with nothing behind it but the snapshot."""

    def __init__(self, valid) -> None:
        self.snap = build_snapshot(valid, loaded_at=0.0)

    def snapshot(self):
        return self.snap

    async def apply(self, valid, edit=None):
        self.snap = build_snapshot(valid, loaded_at=0.0)
        return self.snap


def count_parses(monkeypatch) -> list[bool]:
    """One entry per parse of a document: whether it ran on the event loop's thread."""
    seen = []
    real = candidate.parse_document

    def parse_document(data, fmt):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(data, fmt)

    monkeypatch.setattr(candidate, "parse_document", parse_document)
    return seen


def test_at_start_and_on_reload_the_file_is_parsed_once_off_the_loop(tmp_path, monkeypatch):
    path = write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-1"})
    parses = count_parses(monkeypatch)

    async def run():
        start = await choose_start(path)
        assert parses == [False]
        plane = ControlPlane(DataPath(start.valid), CollectorRegistry(), start)
        write(tmp_path, stamps=STAMPS, tenants={"acme": "eu-2"}, admin={"listen": "127.0.0.1:9999"})
        result = await plane.reload_file()
        assert result.ok, result
        assert parses == [False, False]
        assert plane.bootstrap.admin.listen == "127.0.0.1:9999"      # the bootstrap came from that parse
        assert dict(plane.reloader.current.pins) == {"acme": "eu-2"}
        await plane.close()

    asyncio.run(run())
