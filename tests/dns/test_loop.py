"""The live loop: `stamp-router dns sync` (not --once) as a process, against real BIND,
fed by a small registry that serves the router's GET /stamps document.

A stamp flipped unhealthy leaves the A set after `remove_after` unhealthy registry reads
(never before), and comes back after the first healthy one. Nothing is timed: at every
read the registry notes whether BIND still serves the address. Passes run one after the
other, so read k+1 sees what pass k wrote: the address must still be there at unhealthy
reads 1..remove_after and gone at read remove_after+1; after the flip back it must be
gone at healthy read 1 and there at read 2. Deadlines only bound the waiting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import aiohttp
import dns.asyncquery
import dns.message
from aiohttp import web

from tests.dns.servers import ZONE, free_port
from tests.dns.support import serve_app

INTERVAL = 0.2
REMOVE_AFTER = 2
DEADLINE = 30.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Registry:
    """Serves GET /stamps like the router's admin API; POST /health/{name} flips a stamp."""

    def __init__(self, dns_port: int, name: str) -> None:
        self.healthy = {"eu-1": True, "eu-2": True}
        self.dns_port, self.name = dns_port, name
        self.reads: list[tuple[bool, bool]] = []     # (eu-2 healthy, eu-2 in DNS) per read since a flip

    def stamp(self, name: str, address: str) -> dict:
        healthy = self.healthy[name]
        return {"name": name, "region": "eu", "residency": "eu", "state": "active", "weight": 100,
                "public": [address], "failover": [], "healthy": healthy, "panic": False,
                "backends": [{"address": "10.1.0.10:8080", "healthy": healthy, "ejected_until": None,
                              "consecutive_failures": 0 if healthy else 3,
                              "last_probe": {"ok": healthy, "status": 200 if healthy else 503,
                                             "at": time.time(), "error": None}}]}

    async def get_stamps(self, request: web.Request) -> web.Response:
        served = "203.0.113.20" in await a_records(self.dns_port, self.name)
        self.reads.append((self.healthy["eu-2"], served))
        return web.json_response({"version": "loop-test", "stamps": [
            self.stamp("eu-1", "203.0.113.10"), self.stamp("eu-2", "203.0.113.20")]})

    async def post_health(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = request.match_info["name"]
        self.healthy[name] = bool(body["healthy"])
        self.reads = []
        return web.json_response({"name": name, "healthy": self.healthy[name]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/stamps", self.get_stamps)
        app.router.add_post("/health/{name}", self.post_health)
        return app


async def a_records(port: int, name: str) -> set[str]:
    response = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return {rd.address for rrset in response.answer for rd in rrset}


async def wait_for(check, what: str, proc) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if proc.returncode is not None:
            raise AssertionError(f"the updater exited ({proc.returncode}) while waiting for {what}")
        if await check():
            return
        await asyncio.sleep(0.05)   # poll interval; the check decides
    raise AssertionError(f"not within {DEADLINE:g}s: {what}")


def test_the_loop_follows_health_with_hysteresis(bind, tmp_path, uniq):
    name = f"loop-{uniq}.{ZONE}"
    metrics_port = free_port()

    async def main():
        registry = Registry(bind.port, name)
        async with serve_app(registry.app()) as base, aiohttp.ClientSession() as http:
            config = tmp_path / "dns.toml"
            config.write_text(f"""
[source]
stamps_url = "{base}/stamps"
timeout = "2s"
[provider]
kind = "rfc2136"
server = "{bind.address}"
zone = "{ZONE}"
tsig_key_file = "{bind.key_file}"
[sync]
interval = "{INTERVAL}s"
owner_id = "loop-{uniq}"
remove_after = {REMOVE_AFTER}
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[records]]
name = "loop-{uniq}"
type = "A"
region = "eu"
""")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "router", "dns", "sync", "-c", str(config), cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            try:
                both = {"203.0.113.10", "203.0.113.20"}

                async def has(expected):
                    return await a_records(bind.port, name) == expected

                await wait_for(lambda: has(both), "both stamps published", proc)

                async def reads(n):
                    return len(registry.reads) >= n

                await http.post(f"{base}/health/eu-2", json={"healthy": False})
                await wait_for(lambda: reads(REMOVE_AFTER + 1), "unhealthy reads", proc)
                assert registry.reads[:REMOVE_AFTER + 1] == [(False, True)] * REMOVE_AFTER + [(False, False)]
                assert await has({"203.0.113.10"})

                await http.post(f"{base}/health/eu-2", json={"healthy": True})
                await wait_for(lambda: reads(2), "healthy reads", proc)
                assert registry.reads[:2] == [(True, False), (True, True)]
                assert await has(both)

                async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                    metrics = await resp.text()
                assert 'stamp_dns_changes_applied_total{action="create"} 1.0' in metrics
                assert 'stamp_dns_changes_applied_total{action="update"} 2.0' in metrics
                assert 'stamp_dns_last_sync_result{result="ok"} 1.0' in metrics
                assert 'stamp_dns_stamp_published{stamp="eu-2"} 1.0' in metrics
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                output, _ = await asyncio.wait_for(proc.communicate(), DEADLINE)
            assert proc.returncode == 0, output.decode(errors="replace")
            text = output.decode()
            assert f"~ update {name} A" in text and f"- {name} 30 A 203.0.113.20" in text

    asyncio.run(main())
