"""Retries (router.proxy.exchange) against real processes: on another backend of the same
stamp when it is safe, within the budget, never once the response has begun."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading

import pytest

from tests.health.support import RawBackend
from tests.support.router_proc import stamp
from tests.support.servers import free_port, wait_until

TENANT = {"X-Tenant-ID": "acme"}
# Passive ejection would take the failing backend out and hide what these tests look at.
NO_EJECTION = {"consecutive_failures": 100000}


def doc(backends: list[str], **extra) -> dict:
    return {"routing": {"sources": ["header"], "unpinned": "reject"}, "outlier": NO_EJECTION,
            "stamps": [stamp("eu-1", backends)], "tenants": {"acme": "eu-1"}, **extra}


@pytest.fixture
def raw(bg):
    started = []

    def make(mode: str) -> RawBackend:
        b = bg.run(RawBackend(mode).start())
        started.append(b)
        return b

    yield make
    for b in started:
        bg.run(b.stop())


def test_connect_failure_is_retried_on_another_backend(backends, router_proc):
    (good,) = backends("good")
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc(doc([dead, good.address]))
    body = b"p" * 5000
    for i in range(10):
        method = "GET" if i % 2 else "POST"      # nothing was sent: any method may go again
        status, _, data = router.request(method, "/upload", headers=TENANT, body=body if method == "POST" else None)
        assert status == 200, data
        if method == "POST":
            assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
    assert len(good.hits("/upload")) == 10
    retried = router.metric("stamp_router_retries_total", stamp="eu-1")
    assert retried >= 1
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu-1", backend=dead, kind="connect") == retried


def test_no_retry_when_attempts_is_zero(backends, router_proc):
    (good,) = backends("good")
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc(doc([dead, good.address], retry={"attempts": 0}))
    statuses = {router.request("GET", "/x", headers=TENANT)[0] for _ in range(10)}
    assert statuses == {200, 502}
    assert router.metric("stamp_router_retries_total", stamp="eu-1") == 0


def test_a_connection_dying_before_the_response_retries_idempotent_requests_only(raw, backends, router_proc):
    dropper = raw("drop")
    (good,) = backends("good")
    router = router_proc(doc([dropper.address, good.address]))
    for _ in range(6):
        assert router.request("GET", "/get", headers=TENANT)[0] == 200
    gets_dropped = sum(1 for r in dropper.requests if r.startswith("GET"))
    assert gets_dropped >= 1 and len(good.hits("/get")) == 6

    outcomes = [router.request("POST", "/post", headers=TENANT, body=b"once")[0] for _ in range(6)]
    posts_dropped = sum(1 for r in dropper.requests if r.startswith("POST"))
    assert posts_dropped >= 1
    # The dropper may have acted on each POST it read: none of them went anywhere else.
    assert outcomes.count(502) == posts_dropped
    assert len(good.hits("/post")) == 6 - posts_dropped


def test_a_dead_pooled_connection_resends_a_get_but_not_a_post(raw, router_proc):
    backend = raw("second-drop")
    router = router_proc(doc([backend.address]))
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    try:
        for method in ("GET", "GET"):            # the second one goes over the pooled connection
            conn.request(method, "/g", headers=TENANT)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"ok"
        assert backend.requests == ["GET /g HTTP/1.1"] * 3
        conn.request("POST", "/p", headers=TENANT, body=b"x")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 502
    assert [r for r in backend.requests if r.startswith("POST")] == ["POST /p HTTP/1.1"]


def test_never_retried_once_the_response_has_begun(raw, backends, router_proc):
    truncator = raw("truncate")
    (good,) = backends("good")
    router = router_proc(doc([truncator.address, good.address]))
    truncated = 0
    for _ in range(6):
        try:
            status, _, _ = router.request("GET", "/t", headers=TENANT)
            assert status == 200
        except http.client.IncompleteRead:
            truncated += 1
    assert truncated == len(truncator.requests) >= 1
    assert len(good.hits("/t")) == 6 - truncated


def test_retries_stop_at_the_budget(bg, scripted, router_proc):
    """Requests that failed to connect are retried while fewer than max(3, budget x in
    flight) retries are under way. The retried ones are held at the backend until every
    request has been answered or held, so none ends early and frees budget."""
    slow = scripted("slow")
    slow.hold = True
    dead = f"127.0.0.1:{free_port()}"
    router = router_proc(doc([dead, slow.address], retry={"attempts": 1, "budget": 0.1}))
    n = 12
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def one():
        barrier.wait()
        statuses.append(router.request("GET", "/held", headers=TENANT, timeout=30)[0])

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(statuses) + slow.held == n, 15, message="every request answered or held")
        retried = router.metric("stamp_router_retries_total", stamp="eu-1")
    finally:
        slow.release(bg.loop)
        for t in threads:
            t.join(30)
    # 0.1 x 12 in flight is below the floor of 3: at most 3 retries at once.
    assert 1 <= retried <= 3
    assert statuses.count(502) >= 1
    assert statuses.count(502) + statuses.count(200) == n
    assert statuses.count(200) == slow.served
