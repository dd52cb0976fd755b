"""[stamps.tls]: TLS to the backends, verified; a failed verification is a failed attempt."""

from __future__ import annotations

import json
import ssl

import pytest
from aiohttp import web

from tests.support.router_proc import stamp
from tests.support.servers import Backend, build_backend_app, wait_until


async def start_tls_backend(backend: Backend, ctx: ssl.SSLContext) -> Backend:
    backend.runner = web.AppRunner(build_backend_app(backend), access_log=None, handle_signals=False)
    await backend.runner.setup()
    site = web.TCPSite(backend.runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    backend.port = backend.runner.addresses[0][1]
    return backend


@pytest.fixture
def tls_backend(bg, pki):
    started = []

    def make(name: str, *names: str, expired: bool = False, client_ca=None, issuer=None) -> Backend:
        pair = (issuer or pki).issue(name, *(names or ("stamp.internal",)), expired=expired)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pair["cert_file"], pair["key_file"])
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        backend = bg.run(start_tls_backend(Backend(name), ctx))
        started.append(backend)
        return backend

    yield make
    from tests.support.servers import stop_backend
    for b in started:
        bg.run(stop_backend(b))


def doc_for(backend: Backend, tls: dict) -> dict:
    return {"stamps": [stamp("eu", [backend.address], tls=tls)], "routing": {"sources": ["header"], "unpinned": "hash"}}


def test_requests_reach_a_verified_backend_over_pooled_tls(pki, tls_backend, router_proc):
    b = tls_backend("eu-1", "stamp.internal")
    router = router_proc(doc_for(b, {"ca_file": str(pki.ca_file), "server_name": "stamp.internal"}))
    for _ in range(3):
        status, _, body = router.request("GET", "/x", headers={"X-Tenant-ID": "acme"})
        assert status == 200, body
    peers = {hit["peer"][1] for hit in b.hits("/x")}
    assert len(peers) == 1          # one pooled TLS connection carried all three


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_name", "expired"])
def test_a_backend_that_fails_verification_gets_no_request_and_the_client_502(case, pki, tls_backend, router_proc,
                                                                               tmp_path):
    from tests.tls.support import Pki
    b = tls_backend("eu-1", "stamp.internal", expired=case == "expired")
    ca_file = Pki(tmp_path / "other").ca_file if case == "wrong_ca" else pki.ca_file
    name = "other.internal" if case == "wrong_name" else "stamp.internal"
    router = router_proc(doc_for(b, {"ca_file": str(ca_file), "server_name": name}))
    status, _, body = router.request("GET", "/secret", headers={"X-Tenant-ID": "acme"})
    assert status == 502 and json.loads(body)["kind"] == "upstream_failure", body
    assert b.hits("/secret") == []
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu", backend=b.address, kind="tls") == 1
    wait_until(lambda: "certificate verify failed" in router.stderr(), 10, message="the reason logged")


def test_client_certificates_to_the_stamp(pki, tls_backend, router_proc):
    b = tls_backend("eu-1", "stamp.internal", client_ca=pki.ca_file)
    client = pki.issue("router-client", "router.internal")
    tls = {"ca_file": str(pki.ca_file), "server_name": "stamp.internal"}
    router = router_proc(doc_for(b, tls))
    assert router.request("GET", "/m", headers={"X-Tenant-ID": "acme"})[0] == 502   # no client certificate
    router.stop()
    router = router_proc(doc_for(b, {**tls, "client_cert_file": client["cert_file"],
                                     "client_key_file": client["key_file"]}))
    status, _, body = router.request("GET", "/m", headers={"X-Tenant-ID": "acme"})
    assert status == 200, body


def test_health_probes_use_the_stamps_tls(pki, tls_backend, router_proc):
    b = tls_backend("eu-1", "stamp.internal")
    doc = doc_for(b, {"ca_file": str(pki.ca_file), "server_name": "stamp.internal"})
    doc["stamps"][0]["health"] = {"enabled": True, "interval": "0.2s", "rise": 1}
    router = router_proc(doc)
    wait_until(lambda: any(h["path"] == "/healthz" for h in b.requests) or
               router.admin_json("/stamps")["stamps"][0]["backends"][0].get("healthy"), 20,
               message="a probe over TLS")
    stamps = router.admin_json("/stamps")["stamps"][0]
    assert json.dumps(stamps).count("tls:") == 0, stamps


def test_a_bad_ca_file_refuses_the_config_with_its_path(tls_backend, router_proc, tmp_path):
    b = tls_backend("eu-1", "stamp.internal")
    router = router_proc(doc_for(b, {"ca_file": str(tmp_path)}), start=False)
    router.start(wait_ready=False)
    router.proc.wait(30)
    assert "stamps[0].tls.ca_file" in router.stderr() and "is a directory" in router.stderr()


def test_a_backend_failing_verification_is_ejected_and_the_request_retried_on_another(pki, tls_backend, router_proc,
                                                                                    tmp_path):
    from tests.tls.support import Pki
    bad = tls_backend("eu-bad", "stamp.internal", issuer=Pki(tmp_path / "rogue"))
    good = tls_backend("eu-good", "stamp.internal")
    doc = {"stamps": [stamp("eu", [bad.address, good.address],
                            tls={"ca_file": str(pki.ca_file), "server_name": "stamp.internal"})],
           "routing": {"sources": ["header"], "unpinned": "hash"},
           "outlier": {"consecutive_failures": 2, "base_ejection": 60.0, "max_ejection": 60.0}}
    router = router_proc(doc)
    statuses = []
    while router.metric("stamp_router_backend_ejections_total", stamp="eu", backend=bad.address) < 1:
        assert len(statuses) < 40, statuses
        statuses.append(router.request("GET", "/r", headers={"X-Tenant-ID": f"t{len(statuses)}"})[0])
    # Each failed verification was an attempt on the stamp's other backend instead.
    assert set(statuses) == {200}, statuses
    failures = router.metric("stamp_router_upstream_errors_total", stamp="eu", backend=bad.address, kind="tls")
    assert failures >= 2 and bad.hits("/r") == []
    for i in range(10):
        assert router.request("GET", "/r", headers={"X-Tenant-ID": f"u{i}"})[0] == 200
    # Ejected: no more handshakes with it.
    assert router.metric("stamp_router_upstream_errors_total", stamp="eu", backend=bad.address, kind="tls") == failures
