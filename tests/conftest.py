"""Shared fixtures: a background loop for backends, backend factories, the router process."""

from __future__ import annotations

import gc

import pytest

from tests.support.router_proc import RouterProcess
from tests.support.servers import Backend, BackgroundLoop, SinkServer, start_backend, stop_backend


# The test backends run on a thread of this process, so a pause here is a pause of every
# backend. A full collection over what the suite keeps alive (moto's and botocore's models,
# hypothesis' state) grew to 0.3 s late in a run, past the probe timeouts of the tests
# that start a router. Freezing what survives each module keeps collections to what is new.
def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _freeze_module_survivors():
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def bg():
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture
def backends(bg):
    """Factory: backends("eu-1", "eu-2") starts one recording backend per name."""
    started: list[Backend] = []

    def make(*names: str) -> list[Backend]:
        out = [bg.run(start_backend(Backend(name))) for name in names]
        started.extend(out)
        return out

    yield make
    for b in started:
        bg.run(stop_backend(b))


@pytest.fixture
def sink(bg):
    s = bg.run(SinkServer().start())
    yield s
    bg.run(s.stop())


@pytest.fixture
def router_proc(tmp_path):
    """Factory: router_proc(doc) writes the config, starts `stamp-router serve`, waits for ready."""
    procs: list[RouterProcess] = []

    def make(doc: dict, *, start: bool = True, **kwargs) -> RouterProcess:
        proc = RouterProcess(tmp_path, doc, **kwargs)
        procs.append(proc)
        return proc.start() if start else proc

    make.procs = procs             # for the failure report below
    yield make
    for p in procs:
        p.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran the router reports the tail of its stderr (the router's
    log): a failure seen once in a full run is then explained by that run."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    # Any factory fixture that started routers lists them in `procs` (router_proc, side_by_side).
    procs = [p for value in getattr(item, "funcargs", {}).values()
             if isinstance(getattr(value, "procs", None), list) for p in value.procs]
    for n, proc in enumerate(procs, 1):
        tail = "\n".join(proc.stderr().splitlines()[-40:])
        report.sections.append((f"router {n} stderr, last lines", tail or "(empty)"))
