"""Fixtures: real DNS servers (one of each per test session), configs and fake registries."""

from __future__ import annotations

import itertools

import pytest

from router.dns.config import parse_dns_config
from router.dns.errors import RegistryError
from router.dns.model import Registry, StampInfo
from tests.dns import servers

_serial = itertools.count(1)


@pytest.fixture(scope="session")
def bind(tmp_path_factory):
    server = servers.start_bind(str(tmp_path_factory.mktemp("bind")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def knot(tmp_path_factory):
    server = servers.start_knot(str(tmp_path_factory.mktemp("knot")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory):
    server = servers.start_powerdns(str(tmp_path_factory.mktemp("powerdns")))
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a DNS server reports whether that server still runs, and
    the tail of its log: a flaky failure is then explained by the run that had it."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    seen = set()
    for server in getattr(item, "funcargs", {}).values():
        if isinstance(server, servers.Server) and id(server) not in seen:
            seen.add(id(server))
            state = "running" if server.proc.poll() is None else f"exited with {server.proc.returncode}"
            report.sections.append((f"{server.kind} server ({state}), last log lines", server.log_tail(40)))


@pytest.fixture(params=["bind", "knot"])
def rfc2136_server(request):
    """The contract suite runs once against BIND and once against Knot."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def uniq():
    """A label no other test uses: tests share a server, never a name or an owner id."""
    return f"t{next(_serial)}"


def rfc2136_provider(server) -> dict:
    return {"kind": "rfc2136", "server": server.address, "zone": servers.ZONE,
            "tsig_key_file": server.key_file, "timeout": "3s"}


def make_config(provider: dict, records: list[dict], *, base_dir: str = ".", **sync):
    doc = {
        "source": {"stamps_url": "http://127.0.0.1:9/stamps"},
        "provider": provider,
        "sync": {"owner_id": "test-owner", "interval": "1s", **sync},
        "records": records,
    }
    return parse_dns_config(doc, base_dir)


def stamp(name, region="eu", *, public=(), weight=100, healthy=True, state="active") -> StampInfo:
    return StampInfo(name, region, state, weight, tuple(public), healthy)


class FakeRegistry:
    """A registry whose answer the test sets: stamps, an exception, or nothing."""

    def __init__(self, stamps=(), version="test-1"):
        self.stamps = list(stamps)
        self.version = version
        self.error: Exception | None = None
        self.reads = 0

    def set_health(self, name: str, healthy: bool) -> None:
        self.stamps = [StampInfo(s.name, s.region, s.state, s.weight, s.public, healthy)
                       if s.name == name else s for s in self.stamps]

    async def read(self) -> Registry:
        self.reads += 1
        if self.error is not None:
            raise self.error
        if not self.stamps:
            raise RegistryError("registry fake lists no stamps; changing nothing")
        return Registry(self.version, tuple(self.stamps), "fake")
