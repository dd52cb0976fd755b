"""Key holders and JwtRuntime against a local JWKS server (aiohttp) and files on disk.

Each test runs its own event loop with asyncio.run; background work is awaited by polling
with a deadline (tests.support.servers.eventually), never by sleeping a guessed time.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from router.config import load_config
from router.core import ALL_HEALTHY, build_snapshot, decide
from router.errors import ConfigError
from router.jwt import JwtRuntime
from router.jwt.jwks import JwksManager, refresh_delay, redact
from router.jwt.metrics import JwtMetrics
from router.jwt.tasks import Tasks
from tests.core.support import NOW
from tests.jwt.jwks_server import JwksServer
from tests.jwt.support import SECRET, bearer, jwks, jwt_config, jwt_config_text, public_jwk, rsa_key, token
from tests.support.servers import eventually


def run(coro_fn):
    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(coro_fn(*args, **kwargs))
    return wrapper


def metric(registry: CollectorRegistry, name: str, **labels) -> float | None:
    return registry.get_sample_value(name, labels or None)


def url_config(url: str, extra: str = ""):
    return jwt_config(f'jwks_url = "{url}"\n' + extra)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- refresh timing policy


@pytest.mark.parametrize(("cache_control", "delay"), [
    (None, 300), ("", 300), ("public", 300), ("max-age=120", 120), ("public, max-age=600, must-revalidate", 600),
    ("max-age=10", 60), ("max-age=0", 60), ("max-age=999999", 86400), ("no-store", 60), ("no-cache, private", 60),
    ("s-maxage=50", 300), ('max-age="900"', 900),
])
def test_refresh_delay_honours_max_age_within_bounds(cache_control, delay):
    assert refresh_delay(cache_control, url_config("https://id.example.com/j").config.jwt) == delay


def test_refresh_bounds_are_configurable():
    jwt = url_config("https://id.example.com/j", 'jwks_min_refresh = "5s"\njwks_max_refresh = "1m"').config.jwt
    assert refresh_delay("max-age=1", jwt) == 5 and refresh_delay("max-age=3600", jwt) == 60


def test_credentials_in_a_url_are_not_shown():
    assert redact("https://user:pw@id.example.com:8443/jwks") == "https://id.example.com:8443/jwks"
    assert redact("https://id.example.com/jwks") == "https://id.example.com/jwks"


# -- JwksManager on its own


async def manager(server: JwksServer, extra: str = "", clock=None):
    registry = CollectorRegistry()
    session = aiohttp.ClientSession()
    jwt = url_config(server.url, extra).config.jwt
    kw = {"clock": clock} if clock else {}
    m = JwksManager(server.url, jwt, JwtMetrics(registry, lambda: (None, 0, 0)), session, **kw)
    return m, registry, session


@run
async def test_a_fetch_loads_keys_and_reads_max_age():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    server.headers = {"Cache-Control": "public, max-age=10"}
    m, registry, session = await manager(server)
    try:
        await m.load()
        assert m.keyref.current.kids() == ["k1"]
        assert m.next_delay == 60                     # max-age 10 raised to jwks_min_refresh
        assert metric(registry, "stamp_router_jwks_refresh_total", source=m.label, result="ok") == 1
        assert metric(registry, "stamp_router_jwks_keys", source=m.label) == 1
        assert metric(registry, "stamp_router_jwks_last_success_timestamp_seconds", source=m.label) > 0
    finally:
        await session.close()
        await server.stop()


@pytest.mark.parametrize("breakage", ["status", "json", "no usable key", "redirect", "too large", "down"])
@run
async def test_a_failed_refresh_keeps_the_old_keys_and_shows_in_metrics(breakage):
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    m, registry, session = await manager(server)
    try:
        await m.load()
        held = m.keyref.current
        if breakage == "status":
            server.status = 503
        elif breakage == "json":
            server.body = b"<html>maintenance</html>"
        elif breakage == "no usable key":
            server.body = jwks({"kty": "oct", "k": "c2VjcmV0"})
        elif breakage == "redirect":
            m.url = server.url.replace("/jwks.json", "/moved")
        elif breakage == "too large":
            server.body = b" " * (1024 * 1024 + 1)
        else:
            await server.stop()
        assert await m.refresh() is False
        assert m.keyref.current is held
        assert metric(registry, "stamp_router_jwks_refresh_total", source=m.label, result="error") == 1
        assert m.status()["last_result"].startswith("error: ")
        assert m.failures == 1 and m.next_delay == 5    # an early retry, not the 5-minute interval
        assert await m.refresh() is False and m.next_delay == 10
    finally:
        await session.close()
        await server.stop()


@run
async def test_a_first_load_that_fails_raises():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    server.status = 404
    m, _, session = await manager(server)
    try:
        with pytest.raises(Exception, match="answered HTTP 404"):
            await m.load()
        assert m.keyref.current is None
    finally:
        await session.close()
        await server.stop()


@run
async def test_an_unchanged_jwks_costs_a_304():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    server.etag = '"v1"'
    m, registry, session = await manager(server)
    try:
        await m.load()
        held = m.keyref.current
        assert await m.refresh() is True
        assert m.keyref.current is held
        assert metric(registry, "stamp_router_jwks_refresh_total", source=m.label, result="not_modified") == 1
    finally:
        await session.close()
        await server.stop()


@run
async def test_unknown_kids_trigger_at_most_one_refetch_per_interval():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    clock = Clock()
    m, registry, session = await manager(server, clock=clock)
    try:
        await m.load()
        m.start(tasks := Tasks())
        server.publish(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2"))
        for kid in ("k2", "k3", "k4", "k2"):
            m.on_unknown_kid(kid)
        await eventually(lambda: "k2" in m.keyref.current.kids(), what="the refetch")
        assert server.requests == 2
        assert metric(registry, "stamp_router_jwks_unknown_kid_total", source=m.label) == 4
        assert metric(registry, "stamp_router_jwks_unknown_kid_refetches_total", source=m.label) == 1
        clock.now += 29
        m.on_unknown_kid("k5")
        assert not m._wake.is_set()                     # still inside the 30 s: no refetch asked
        clock.now += 2
        m.on_unknown_kid("k5")
        await eventually(lambda: server.requests == 3, what="the second refetch")
        assert metric(registry, "stamp_router_jwks_unknown_kid_refetches_total", source=m.label) == 2
        await tasks.cancel_all()
    finally:
        await session.close()
        await server.stop()


@run
async def test_the_background_refresh_runs_on_its_timer():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    m, _, session = await manager(server, 'jwks_refresh = "20ms"')
    tasks = Tasks()
    try:
        await m.load()
        m.start(tasks)
        server.publish(public_jwk(rsa_key("k2"), "k2"))
        await eventually(lambda: m.keyref.current.kids() == ["k2"], what="rotation by the timer")
        await eventually(lambda: server.requests >= 3, what="a further refresh")
    finally:
        await tasks.cancel_all()
        await session.close()
        await server.stop()


# -- JwtRuntime, as the server uses it


async def runtime_with(server: JwksServer, extra: str = ""):
    registry = CollectorRegistry()
    rt = JwtRuntime(registry)
    valid = url_config(server.url, extra)
    await rt.prepare(valid)
    snap = build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
    return rt, registry, valid, snap


@run
async def test_prepare_loads_keys_and_the_snapshot_routes_by_the_verified_claim():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    rt, registry, _, snap = await runtime_with(server)
    try:
        assert rt.ready
        d = decide(bearer(token(), tenant_header="victim"), snap, ALL_HEALTHY, NOW)
        assert d.ok and d.tenant == "acme"
        status = rt.status()
        assert status["ready"] and status["jwt"] and status["last_prepare_error"] is None
        (src,) = status["key_sources"]
        assert src["kind"] == "jwks_url" and src["location"] == server.url and src["in_use"]
        assert [k["kid"] for k in src["keys"]] == ["k1"] and src["last_result"] == "ok"
        text = generate_latest(registry).decode()
        for name in ("stamp_router_jwks_refresh_total", "stamp_router_jwks_keys", "stamp_router_jwt_cache_hits_total",
                     "stamp_router_jwks_last_success_timestamp_seconds"):
            assert name in text
    finally:
        await rt.close()
        await server.stop()


@run
async def test_unknown_kid_is_refused_then_accepted_after_the_refetch():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    rt, registry, _, snap = await runtime_with(server)
    try:
        server.publish(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2"))
        tok = token(rsa_key("k2"), kid="k2")
        d = decide(bearer(tok), snap, ALL_HEALTHY, NOW)
        assert d.status == 401 and "unknown key id 'k2'" in d.message
        await eventually(lambda: decide(bearer(tok), snap, ALL_HEALTHY, NOW).ok, what="k2 to verify")
        assert server.requests == 2
        assert metric(registry, "stamp_router_jwks_unknown_kid_refetches_total",
                      source=f"jwks_url {server.url}") == 1
    finally:
        await rt.close()
        await server.stop()


@run
async def test_a_key_removed_from_the_jwks_stops_validating_cached_tokens():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1"), public_jwk(rsa_key("k2"), "k2")).start()
    rt, registry, _, snap = await runtime_with(server)
    try:
        tok = token()
        assert decide(bearer(tok), snap, ALL_HEALTHY, NOW).ok
        assert decide(bearer(tok), snap, ALL_HEALTHY, NOW).ok
        assert metric(registry, "stamp_router_jwt_cache_hits_total") == 1
        server.publish(public_jwk(rsa_key("k2"), "k2"))
        (holder,) = rt._holders.values()
        assert await holder.refresh()
        d = decide(bearer(tok), snap, ALL_HEALTHY, NOW)
        assert d.status == 401 and "unknown key id 'k1'" in d.message
    finally:
        await rt.close()
        await server.stop()


@run
async def test_prepare_fails_with_a_config_error_when_no_keys_can_be_had():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    server.status = 500
    rt = JwtRuntime(CollectorRegistry())
    try:
        with pytest.raises(ConfigError) as info:
            await rt.prepare(url_config(server.url))
        assert info.value.errors[0][0] == "jwt.jwks_url" and "HTTP 500" in info.value.errors[0][1]
        assert rt.status()["key_sources"] == [] and "HTTP 500" in rt.status()["last_prepare_error"]
        with pytest.raises(RuntimeError, match="prepare"):
            rt.source_factory(url_config(server.url))
    finally:
        await rt.close()
        await server.stop()


@run
async def test_a_reload_with_the_same_url_does_not_refetch_and_keeps_the_cache():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    rt, _, valid, snap = await runtime_with(server)
    try:
        first = snap.sources[0]
        again = url_config(server.url, "# a pin changed elsewhere")
        await rt.prepare(again)
        snap2 = build_snapshot(again, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        assert server.requests == 1
        assert snap2.sources[0].cache is first.cache and snap2.sources[0].keys is first.keys
        other = url_config(server.url, 'leeway = "5s"')
        await rt.prepare(other)
        snap3 = build_snapshot(other, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        assert snap3.sources[0].cache is not first.cache     # answers under another leeway are not reused
    finally:
        await rt.close()
        await server.stop()


@run
async def test_a_key_source_no_snapshot_uses_any_more_is_retired():
    a = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    b = await JwksServer(public_jwk(rsa_key("k2"), "k2")).start()
    rt, registry, _, snap = await runtime_with(a)
    try:
        valid_b = url_config(b.url)
        await rt.prepare(valid_b)
        assert len(rt.status()["key_sources"]) == 2          # the old snapshot still decides requests
        snap_b = build_snapshot(valid_b, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        del snap
        gc.collect()
        assert [s["location"] for s in rt.status()["key_sources"]] == [b.url]
        assert metric(registry, "stamp_router_jwks_keys", source=f"jwks_url {a.url}") is None
        assert decide(bearer(token(rsa_key("k2"), kid="k2")), snap_b, ALL_HEALTHY, NOW).ok
    finally:
        await rt.close()
        await a.stop()
        await b.stop()


@run
async def test_a_config_without_jwt_needs_no_keys():
    rt = JwtRuntime(CollectorRegistry())
    try:
        valid = jwt_config('jwks_url = "http://127.0.0.1:9/none"', routing='[routing]\nsources = ["header"]\n')
        await rt.prepare(valid)
        assert rt.ready and rt.status()["jwt"] is False
    finally:
        await rt.close()


@run
async def test_close_stops_the_background_refresh():
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    rt, _, _, _ = await runtime_with(server, 'jwks_refresh = "10ms"')
    await eventually(lambda: server.requests >= 2, what="a background refresh")
    await rt.close()
    assert len(rt._tasks) == 0
    with pytest.raises(RuntimeError):
        await rt.prepare(url_config(server.url))
    await server.stop()


# -- files


@run
async def test_a_jwks_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks(public_jwk(rsa_key("k1"), "k1")))
    valid = jwt_config(f'jwks_file = "{path}"')
    rt = JwtRuntime(CollectorRegistry())
    try:
        await rt.prepare(valid)
        snap = build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        assert decide(bearer(token()), snap, ALL_HEALTHY, NOW).ok
        path.write_bytes(jwks(public_jwk(rsa_key("k2"), "k2"), public_jwk(rsa_key("k1"), "k1")))
        (holder,) = rt._holders.values()
        assert await holder.refresh()                     # what the 5 s poll does
        assert decide(bearer(token(rsa_key("k2"), kid="k2")), snap, ALL_HEALTHY, NOW).ok
        path.write_bytes(b"{broken")
        os.utime(path, ns=(1, 1))
        assert not await holder.refresh()
        assert decide(bearer(token(rsa_key("k2"), kid="k2")), snap, ALL_HEALTHY, NOW).ok   # old keys kept
    finally:
        await rt.close()


@run
async def test_a_secret_file_relative_to_the_config(tmp_path):
    (tmp_path / "hs.secret").write_bytes(SECRET + b"\n")         # echo's newline is not part of it
    conf = tmp_path / "router.toml"
    conf.write_text(jwt_config_text('secret_file = "hs.secret"\nalgorithms = ["HS256"]'))
    valid = load_config(str(conf))
    rt = JwtRuntime(CollectorRegistry())
    try:
        await rt.prepare(valid)
        snap = build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        assert decide(bearer(token(SECRET, "HS256", kid=None)), snap, ALL_HEALTHY, NOW).tenant == "acme"
        assert rt.status()["key_sources"][0]["keys"] == [{"kty": "oct", "detail": "64 bytes", "algorithms": ["HS256"]}]
    finally:
        await rt.close()


@pytest.mark.parametrize(("content", "reason"), [(None, "cannot read"), (b"short\n", "needs at least 32")])
@run
async def test_an_unusable_secret_file_is_a_config_error(tmp_path, content, reason):
    path = tmp_path / "hs.secret"
    if content is not None:
        path.write_bytes(content)
    rt = JwtRuntime(CollectorRegistry())
    try:
        with pytest.raises(ConfigError) as info:
            await rt.prepare(jwt_config(f'secret_file = "{path}"\nalgorithms = ["HS256"]'))
        assert info.value.errors[0][0] == "jwt.secret_file" and reason in info.value.errors[0][1]
    finally:
        await rt.close()



@run
async def test_close_right_after_an_unknown_kid_woke_the_refresher_returns():
    # Regression: with asyncio.wait_for the wake-up swallowed the cancel and close() hung.
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    rt, _, _, snap = await runtime_with(server)
    assert decide(bearer(token(rsa_key("k2"), kid="k2")), snap, ALL_HEALTHY, NOW).status == 401
    async with asyncio.timeout(10):
        await rt.close()
    await server.stop()


async def saved_then_down(tmp_path):
    """A router ran once with the JWKS reachable (and saved it), then the URL went down."""
    server = await JwksServer(public_jwk(rsa_key("k1"), "k1")).start()
    state = f'\n[control]\nstate_dir = "{tmp_path}/state"\n'
    first, _, _, _ = await runtime_with(server, state)
    await first.close()
    server.status = 503
    return server, state


@run
async def test_a_restart_while_the_jwks_url_is_down_serves_the_saved_copy(tmp_path):
    server, state = await saved_then_down(tmp_path)
    registry = CollectorRegistry()
    rt = JwtRuntime(registry)
    try:
        valid = url_config(server.url, state)
        await rt.prepare(valid)
        assert rt.ready
        snap = build_snapshot(valid, loaded_at=NOW, extra_sources={"jwt": rt.source_factory})
        assert decide(bearer(token()), snap, ALL_HEALTHY, NOW).tenant == "acme"
        (src,) = rt.status()["key_sources"]
        assert "HTTP 503" in src["last_result"] and "serving the copy saved" in src["last_result"]
        assert metric(registry, "stamp_router_jwks_refresh_total", source=f"jwks_url {server.url}", result="error") == 1
        server.status = 200
        server.publish(public_jwk(rsa_key("k2"), "k2"))
        (holder,) = rt._holders.values()
        assert await holder.refresh()          # what the refresher's early retry does
        assert decide(bearer(token(rsa_key("k2"), kid="k2")), snap, ALL_HEALTHY, NOW).ok
    finally:
        await rt.close()
        await server.stop()


@run
async def test_a_saved_copy_older_than_jwks_max_refresh_is_not_used(tmp_path):
    server, state = await saved_then_down(tmp_path)
    (saved,) = (tmp_path / "state" / "jwks").iterdir()
    record = orjson.loads(saved.read_bytes())
    saved.write_bytes(orjson.dumps({**record, "saved_at": record["saved_at"] - 86401}))
    rt = JwtRuntime(CollectorRegistry())
    try:
        with pytest.raises(ConfigError) as info:
            await rt.prepare(url_config(server.url, state))
        assert "more than jwks_max_refresh" in info.value.errors[0][1]
    finally:
        await rt.close()
        await server.stop()
