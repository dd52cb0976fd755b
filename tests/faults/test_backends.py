"""Backend faults: a backend that accepts and never answers, answers half a response,
resets mid-body, answers garbage or a 1 MiB header section, or drops SYNs. The client
gets the right status (502/504) within the timeout that applies, the failing backend is
ejected, and a request goes to another backend only when that is safe.

One router for the module, with short timeouts; each stamp is one kind of backend.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass

import pytest

from tests.faults.backends import HALF_BODY, FaultBackend, black_hole
from tests.support.router_proc import RouterProcess, stamp
from tests.support.servers import Backend, start_backend, stop_backend, wait_until

CONNECT_TIMEOUT = 1.0
UPSTREAM_TIMEOUT = 1.0
# What "within its timeout" allows on top: the 0.25 s deadline sweep and a loaded machine.
SLACK = 3.0


@dataclass
class Bench:
    proc: RouterProcess
    fault: FaultBackend           # the only backend of stamp "bad"
    mixed_fault: FaultBackend     # beside `good` in stamp "mixed"
    silent: FaultBackend          # beside `good` in stamp "silent-and-good"
    good: Backend


@pytest.fixture(scope="module")
def bench(bg, tmp_path_factory):
    fault = bg.run(FaultBackend().start())
    mixed_fault = bg.run(FaultBackend().start())
    silent = bg.run(FaultBackend().start())
    good = bg.run(start_backend(Backend("good")))
    with black_hole() as hole:
        doc = {"routing": {"sources": ["header"], "balance": "round_robin"},
               "stamps": [stamp("bad", [fault.address]), stamp("hole", [hole]),
                          stamp("hole-and-good", [hole, good.address]),
                          stamp("mixed", [mixed_fault.address, good.address]),
                          stamp("silent-and-good", [silent.address, good.address])],
               "tenants": {"bad": "bad", "hole": "hole", "hole-and-good": "hole-and-good", "mixed": "mixed",
                           "silent-and-good": "silent-and-good"},
               "timeouts": {"connect": CONNECT_TIMEOUT, "upstream": UPSTREAM_TIMEOUT},
               "retry": {"attempts": 1},
               "outlier": {"consecutive_failures": 2, "base_ejection": "60s"}}
        proc = RouterProcess(tmp_path_factory.mktemp("backend-faults"), doc).start()
        try:
            yield Bench(proc, fault, mixed_fault, silent, good)
        finally:
            proc.stop()
            for backend in (fault, mixed_fault, silent):
                bg.run(backend.stop())
            bg.run(stop_backend(good))


def timed(proc, tenant: str, path: str, method: str = "GET", body: bytes | None = None):
    started = time.monotonic()
    status, headers, data = proc.request(method, path, headers={"X-Tenant-ID": tenant}, body=body, timeout=30)
    return status, data, time.monotonic() - started


@pytest.mark.parametrize(("tenant", "path", "status", "kind", "timeout"), [
    ("bad", "/silent", 504, "upstream_timeout", UPSTREAM_TIMEOUT),      # accepts, reads, never answers
    ("bad", "/half-head", 502, "upstream_failure", 0),                 # closes within the head
    ("bad", "/malformed", 502, "upstream_failure", 0),                 # not HTTP
    ("bad", "/huge-head", 502, "upstream_failure", 0),                 # a 1 MiB header section
    ("hole", "/", 504, "upstream_timeout", CONNECT_TIMEOUT),           # SYN dropped
], ids=["silent", "half-head", "malformed", "huge-head", "black-hole"])
def test_a_backend_fault_is_answered_with_its_status_within_its_timeout(bench, tenant, path, status, kind, timeout):
    proc, fault = bench.proc, bench.fault
    before = fault.paths[path]
    got, data, elapsed = timed(proc, tenant, path)
    assert got == status, data
    assert json.loads(data)["kind"] == kind
    assert elapsed < timeout + SLACK, f"answered after {elapsed:.1f}s"
    if tenant == "bad":
        assert fault.paths[path] == before + 1       # one attempt: the stamp has no other backend


@pytest.mark.parametrize("path", ["/half-body", "/reset-body"])
def test_a_response_cut_short_is_cut_short_for_the_client(bench, path):
    """The head and half the body are already with the client: the router can only end the
    connection before the announced length, never pad it or mark it complete."""
    proc = bench.proc
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    conn.request("GET", path, headers={"X-Tenant-ID": "bad"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Length") == str(2 * HALF_BODY)
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        resp.read()
    conn.close()
    wait_until(lambda: proc.metric("stamp_router_upstream_errors_total", stamp="bad", kind="reset") >= 1, 10,
               message="the cut counted as an upstream reset")


def test_a_failing_backend_is_retried_when_safe_then_ejected(bench):
    """GETs that fail before any response are resent to the stamp's other backend (all
    answered 200); after two failures in a row the failing backend is ejected."""
    proc, mixed_fault, good = bench.proc, bench.mixed_fault, bench.good
    statuses = [timed(proc, "mixed", "/half-head?n=%d" % n)[0] for n in range(6)]
    assert statuses == [200] * 6
    assert proc.metric("stamp_router_retries_total", stamp="mixed") >= 1
    wait_until(lambda: proc.metric("stamp_router_backend_ejected", stamp="mixed", backend=mixed_fault.address) == 1,
               10, message="the failing backend ejected")
    tried = sum(n for p, n in mixed_fault.paths.items() if p.startswith("/half-head"))
    assert 1 <= tried <= 2, mixed_fault.paths      # ejected after the second failure, never tried again
    assert len(good.hits("/half-head")) == 6


def test_a_request_that_may_have_been_acted_on_is_not_resent(bench):
    """A POST whose body the backend took, then closed without answering: 502, sent once.
    (The backend may have acted on it; only the client can decide to send it again.)"""
    proc, fault = bench.proc, bench.fault
    before = fault.paths["/half-head"]
    status, data, _ = timed(proc, "bad", "/half-head", "POST", b"x" * 1000)
    assert status == 502, data
    assert fault.paths["/half-head"] == before + 1


def test_a_request_the_backend_took_and_never_answered_is_not_resent(bench):
    """504 after timeouts.upstream, and not sent to the stamp's other backend: the first
    may still be working on it. (Round robin: one of two requests starts at each.)"""
    proc, good = bench.proc, bench.good
    statuses = sorted(timed(proc, "silent-and-good", "/silent-once")[0] for _ in range(2))
    assert statuses == [200, 504]
    assert bench.silent.paths["/silent-once"] == 1 and len(good.hits("/silent-once")) == 1


def test_a_connect_that_times_out_is_retried_on_another_backend(bench):
    """Nothing was sent to a black hole: the request goes to the other backend, whatever
    its method."""
    proc, good = bench.proc, bench.good
    before = len(good.hits("/after-hole"))
    for n in range(2):    # round robin: one of the two starts at the black hole
        status, data, elapsed = timed(proc, "hole-and-good", "/after-hole", "POST", b"y" * 10)
        assert status == 200, data
        assert elapsed < CONNECT_TIMEOUT + SLACK
    assert len(good.hits("/after-hole")) == before + 2


def test_the_router_serves_on_after_every_fault(bench):
    proc, good = bench.proc, bench.good
    status, data, _ = timed(proc, "mixed", "/fine")
    assert status == 200 and json.loads(data)["stamp"] == "good"
    assert "Traceback" not in proc.stderr()
