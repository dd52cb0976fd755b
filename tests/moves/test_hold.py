"""The hold queue of a paused tenant: clients that go away, its bounds, and its memory."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.moves.support import AUTH, move, router_doc, tenant_info
from tests.support.router_proc import RouterProcess
from tests.support.servers import wait_until

HELD = 10_000


def pause(router, stamp="old", mode="paused"):
    status, _, data = router.admin("PUT", "/tenants/acme", ('{"stamp": "%s", "mode": "%s"}' % (stamp, mode)).encode(),
                                   AUTH)
    assert status == 200, data


def held(router) -> int:
    return tenant_info(router, "acme")["held"]


def send(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\n\r\n" % path.encode())
    return sock


def worker_rss(router) -> int:
    pid = router.admin_json("/readyz")["checks"]["workers"]["workers"][0]["pid"]
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.fixture
def router(tmp_path, stamps):
    doc = router_doc(stamps, tmp_path, migration={"hold_timeout": "60s", "hold_max_requests": HELD},
                     listen={"max_connections": HELD + 1000}, timeouts={"drain": 1.0})
    r = RouterProcess(tmp_path, doc).start()
    yield r
    r.stop()


def test_a_held_request_whose_client_goes_away_is_dropped_and_never_sent(router, stamps):
    pause(router)
    gone = send(router.port, "/gone")
    stays = send(router.port, "/stays")
    wait_until(lambda: held(router) == 2, 20, message="two requests held")
    gone.close()
    wait_until(lambda: held(router) == 1, 20, message="the departed client's request dropped")
    assert router.metric("stamp_router_hold_dropped_total") == 1
    pause(router, "new", "read-write")
    stays.settimeout(10)
    assert stays.recv(4096).startswith(b"HTTP/1.1 200")
    stays.close()
    assert [a.path for a in stamps.arrivals] == ["/stays"] and stamps.arrivals[0].stamp == "new"


def test_a_request_held_past_hold_timeout_is_503_with_retry_after(tmp_path, stamps):
    doc = router_doc(stamps, tmp_path, migration={"hold_timeout": "300ms"})
    r = RouterProcess(tmp_path, doc).start()
    try:
        pause(r)
        status, headers, body = r.request("GET", "/late", headers={"X-Tenant-ID": "acme"})
        assert status == 503 and headers["retry-after"] == "5" and b"tenant_paused" in body
        assert r.metric("stamp_router_hold_refused_total", reason="timeout") == 1
        assert stamps.arrivals == []
    finally:
        r.stop()


def test_ten_thousand_held_requests_stay_bounded_in_memory_and_the_next_is_refused(router, stamps):
    """Takes 10 to 35 s: ten thousand real connections opened, held and closed, which is
    the point (an exchange of a held request must stay a few KiB)."""
    pause(router)
    before = worker_rss(router)
    socks = []
    try:
        for i in range(HELD):
            socks.append(send(router.port, f"/h{i}"))
        wait_until(lambda: held(router) == HELD, 60, interval=0.2, message=f"{HELD} requests held")
        grown = worker_rss(router) - before
        print(f"worker RSS grew {grown / 2**20:.1f} MiB for {HELD} held requests")
        # Each held request is a client connection and its exchange: a few KiB, not more.
        assert grown < HELD * 16 * 1024, f"the worker grew by {grown / 2**20:.1f} MiB for {HELD} held requests"
        extra = send(router.port, "/one-too-many")
        extra.settimeout(10)
        answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer
        extra.close()
        assert router.metric("stamp_router_hold_refused_total", reason="full") == 1
        assert router.metric("stamp_router_held_requests") == HELD
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: held(router) == 0, 60, interval=0.2, message="every held request dropped")
    assert stamps.arrivals == []
    pause(router, "old", "read-write")
    status, _, _ = router.request("GET", "/after", headers={"X-Tenant-ID": "acme"})
    assert status == 200


def test_a_router_restarted_while_paused_comes_back_paused(router, stamps):
    pause(router)
    router.stop(sig=9)
    router.start()
    assert tenant_info(router, "acme")["pin"] == {"stamp": "old", "mode": "paused"}
    sock = send(router.port, "/after-restart")
    wait_until(lambda: held(router) == 1, 20, message="the request held")
    pause(router, "new", "read-write")
    sock.settimeout(10)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
    assert [(a.stamp, a.path) for a in stamps.arrivals] == [("new", "/after-restart")]


def test_an_open_websocket_counts_as_in_flight_until_it_closes_and_a_move_can_close_it(tmp_path):
    """The drain waits for tunnels too (a WebSocket can carry writes), unless the move
    says close_tunnels: then they are closed after the pause, and the move completes."""
    import aiohttp

    from tests.support.router_proc import stamp
    from tests.support.servers import Backend, BackgroundLoop, start_backend, stop_backend

    loop = BackgroundLoop()
    old, new = loop.run(start_backend(Backend("old"))), loop.run(start_backend(Backend("new")))
    token = tmp_path / "token"
    token.write_text("move-test-token")
    doc = {"admin": {"token_file": str(token)}, "routing": {"sources": ["header"]},
           "stamps": [stamp("old", [old.address]), stamp("new", [new.address])], "tenants": {"acme": "old"}}
    r = RouterProcess(tmp_path, doc).start()

    async def talk() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{r.port}/ws", headers={"X-Tenant-ID": "acme"}) as ws:
                await ws.send_str("hi")
                assert (await ws.receive()).data == "old:hi"
                info = tenant_info(r, "acme")
                assert info["in_flight"] == {"old": {"requests": 0, "writes": 0, "tunnels": 1}}
                status, body = await asyncio.to_thread(move, r, "acme", {"to": "new", "timeout": "1s"})
                assert status == 504 and body["outcome"] == "rolled_back", body
                await ws.send_str("still")
                assert (await ws.receive()).data == "old:still"
                status, body = await asyncio.to_thread(move, r, "acme", {"to": "new", "close_tunnels": True})
                assert status == 200 and body["outcome"] == "completed", body
                assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                     aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)
            async with session.ws_connect(f"http://127.0.0.1:{r.port}/ws", headers={"X-Tenant-ID": "acme"}) as ws:
                await ws.send_str("again")
                assert (await ws.receive()).data == "new:again"
                # What stamp-router migrate --close-tunnels asks each router.
                status, _, data = await asyncio.to_thread(r.admin, "DELETE", "/tenants/acme/tunnels", None, AUTH)
                assert status == 200, data
                assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                     aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)

    try:
        loop.run(talk())
        wait_until(lambda: tenant_info(r, "acme")["in_flight"] == {}, 20, message="the tunnels counted out")
    finally:
        r.stop()
        loop.run(stop_backend(old))
        loop.run(stop_backend(new))
        loop.close()


def test_a_draining_router_answers_its_held_requests_503_at_once(router, stamps):
    pause(router)
    sock = send(router.port, "/held")
    wait_until(lambda: held(router) == 1, 20, message="the request held")
    started = time.monotonic()
    router.proc.send_signal(15)
    sock.settimeout(20)
    answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer and b"shutting down" in answer
    assert time.monotonic() - started < 15           # not after hold_timeout (60 s here)
    sock.close()
    router.proc.wait(30)
    assert stamps.arrivals == []
