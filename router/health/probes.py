"""Active health checks: one probe loop per backend, each probe on a fresh connection.

A probe is `GET <path>` with the backend as Host; 2xx and 3xx pass (redirects are not
followed). The connector closes every connection after its response, so a probe sees
what a new client would (a listener that stopped accepting, a full backlog), not a
keep-alive connection that happens to still be open.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from router.tls.upstream import UpstreamTls, server_name_for

log = logging.getLogger("router.health")

# Each wait is the interval shortened by up to this share, picked at random: probes of
# many routers drift apart instead of arriving in lock-step, and a probe still comes at
# least once per interval, which keeps the detection bound (fall x interval + timeout).
JITTER = 0.1
USER_AGENT = "stamp-router-health"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    path: str
    interval: float
    timeout: float
    tls: UpstreamTls | None = None     # the stamp's [stamps.tls], as requests use it


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    status: int | None          # HTTP status, None when there was no response
    error: str | None
    at: float                   # wall-clock seconds when the probe ended
    duration: float


class Prober:
    """Runs the probe loops for a set of targets; results go to `on_result(address, result)`."""

    def __init__(self, on_result: Callable[[str, ProbeResult], None]) -> None:
        self._on_result = on_result
        self._loops: dict[str, tuple[ProbeSpec, asyncio.Task]] = {}
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT},
                                              auto_decompress=False)

    def set_targets(self, targets: dict[str, ProbeSpec]) -> None:
        """Probe exactly these; a loop whose spec is unchanged keeps its rhythm."""
        for address in [a for a in self._loops if targets.get(a) != self._loops[a][0]]:
            self._loops.pop(address)[1].cancel()
        for address, spec in targets.items():
            if address not in self._loops:
                self._loops[address] = (spec, self._spawn(address, spec))

    def _spawn(self, address: str, spec: ProbeSpec) -> asyncio.Task:
        # The dict keeps the only strong reference the event loop would not.
        task = asyncio.get_running_loop().create_task(self._loop(address, spec), name=f"probe {address}")
        task.add_done_callback(self._done)
        return task

    @staticmethod
    def _done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped", task.get_name(), exc_info=task.exception())

    async def _loop(self, address: str, spec: ProbeSpec) -> None:
        loop = asyncio.get_running_loop()
        tls = spec.tls
        url = f"{'https' if tls else 'http'}://{address}{spec.path}"
        # aiohttp's ssl=True means its default verifying context, not plain HTTP: None is.
        tls_args = {"ssl": tls.context, "server_hostname": server_name_for(tls, address)} if tls else {}
        timeout = aiohttp.ClientTimeout(total=spec.timeout)
        while True:
            started = loop.time()
            result = await self._probe(url, timeout, loop, tls_args)
            self._on_result(address, result)
            # Start to start, so a slow probe does not stretch the interval.
            next_at = started + spec.interval * (1.0 - JITTER * random.random())
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _probe(self, url: str, timeout: aiohttp.ClientTimeout, loop, tls_args: dict) -> ProbeResult:
        t0 = time.perf_counter()   # loop.time() has 1 ms resolution under uvloop
        status = error = None
        try:
            async with self._session.get(url, allow_redirects=False, timeout=timeout, **tls_args) as resp:
                status = resp.status
        except asyncio.TimeoutError:
            error = "timeout"
        except aiohttp.ClientConnectorCertificateError as exc:
            error = f"tls: {exc.certificate_error}"
        except aiohttp.ClientConnectorSSLError as exc:
            error = f"tls: {exc.os_error}"
        except aiohttp.ClientConnectorError as exc:
            error = f"connect: {exc.os_error.strerror or exc.os_error}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 400
        if status is not None and not ok:
            error = f"status {status}"
        return ProbeResult(ok, status, error, time.time(), time.perf_counter() - t0)

    async def close(self) -> None:
        tasks = [task for _, task in self._loops.values()]
        self._loops.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
