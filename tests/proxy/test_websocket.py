"""Upgrade: a real WebSocket client (aiohttp) through the router to a WebSocket server in a stamp."""

import asyncio

import aiohttp

from tests.support.router_proc import stamp


def test_websocket_tunnel_both_ways(backends, router_proc):
    eu1, eu2 = backends("eu-1", "eu-2")
    router = router_proc({
        "routing": {"sources": ["header"], "unpinned": "reject"},
        "stamps": [stamp("eu-1", [eu1.address]), stamp("eu-2", [eu2.address])],
        "tenants": {"acme": "eu-2"},
    })

    async def talk():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{router.port}/ws",
                                          headers={"X-Tenant-ID": "acme"}) as ws:
                assert ws._response.headers["X-Stamp"] == "eu-2"
                replies = []
                for i in range(5):
                    await ws.send_str(f"hello {i}")
                    replies.append((await ws.receive(timeout=10)).data)
                big = bytes(range(256)) * 4096  # 1 MiB binary frame, both ways
                await ws.send_bytes(big)
                echoed = (await ws.receive(timeout=10)).data
                await ws.close()
                return replies, echoed == big

    replies, big_ok = asyncio.run(talk())
    assert replies == [f"eu-2:hello {i}" for i in range(5)]
    assert big_ok
    upgrade = eu2.hits("/ws")[0]["headers"]
    assert upgrade["X-Tenant-ID"] == "acme"
    assert upgrade["Upgrade"].lower() == "websocket"
    assert eu1.hits() == []
    # The connection stays usable for plain requests afterwards on a new client connection.
    assert router.request("GET", "/", headers={"X-Tenant-ID": "acme"})[0] == 200


def test_upgrade_refused_by_backend_is_an_ordinary_response(backends, router_proc):
    (eu1,) = backends("eu-1")
    router = router_proc({"routing": {"sources": ["header"]}, "stamps": [stamp("eu-1", [eu1.address])]})
    status, headers, body = router.request("GET", "/not-ws", headers={
        "X-Tenant-ID": "acme", "Connection": "Upgrade", "Upgrade": "websocket"})
    assert status == 200
    assert eu1.hits("/not-ws")[0]["headers"]["Upgrade"] == "websocket"
