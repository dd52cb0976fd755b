"""Certificates reload on file change (rename, symlink swap) with no failed request; a
bad new pair is refused and the old one serves; mTLS from clients."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import threading

import pytest

from tests.support.router_proc import stamp
from tests.support.servers import wait_until
from tests.tls.support import Pki, https_doc, https_get, peer_names

ROUTING = {"sources": ["subdomain"], "domains": ["t.example.com"], "unpinned": "hash"}


def serial_of(port, ctx, name):
    import socket
    from cryptography import x509
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


@pytest.fixture
def live(pki, backends, router_proc, tmp_path):
    """The router serves certs/live/{tls.pem,tls.key}, where live is a symlink (a Kubernetes
    secret's layout: files under a ..data link swapped in one rename)."""
    eu, = backends("eu-1")
    certs = tmp_path / "certs"
    first = certs / "v1"
    first.mkdir(parents=True)
    pair = pki.issue("v1", "*.t.example.com")
    shutil.copy(pair["cert_file"], first / "tls.pem")
    shutil.copy(pair["key_file"], first / "tls.key")
    os.symlink("v1", certs / "live")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])], "routing": ROUTING},
                                 [{"cert_file": str(certs / "live" / "tls.pem"), "key_file": str(certs / "live" / "tls.key")}])
    doc["control"] = {"watch_interval": "0.2s"}
    router = router_proc(doc, **where)
    return router, port, certs


def swap_in(certs, version: str, pair: dict) -> None:
    d = certs / version
    d.mkdir()
    shutil.copy(pair["cert_file"], d / "tls.pem")
    shutil.copy(pair["key_file"], d / "tls.key")
    os.symlink(version, certs / "tmp-link")
    os.replace(certs / "tmp-link", certs / "live")          # one atomic rename, as kubelet does


def test_rotation_under_load_fails_no_request(live, pki):
    router, port, certs = live
    ctx = pki.client_context()
    before = serial_of(port, ctx, "a.t.example.com")
    failures, done = [], threading.Event()

    def load() -> None:
        n = 0
        while not done.is_set() and n < 2000:
            n += 1
            try:
                status, _, _ = https_get(port, ctx, "a.t.example.com", "/load")
                if status != 200:
                    failures.append(status)
            except (OSError, ssl.SSLError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        swap_in(certs, "v2", pki.issue("v2", "*.t.example.com"))
        wait_until(lambda: serial_of(port, ctx, "a.t.example.com") != before, 20, message="the new certificate served")
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert router.metric("stamp_router_tls_certificate_reloads_total", result="ok") >= 1


@pytest.mark.parametrize("bad", ["mismatched_key", "expired", "lost_domain", "empty", "directory"])
def test_a_bad_new_pair_is_refused_and_the_old_one_serves(live, pki, bad):
    router, port, certs = live
    ctx = pki.client_context()
    before = serial_of(port, ctx, "a.t.example.com")
    if bad == "mismatched_key":
        pair = pki.issue("v2", "*.t.example.com")
        pair["key_file"] = pki.issue("other", "*.t.example.com")["key_file"]
    elif bad == "expired":
        pair = pki.issue("v2", "*.t.example.com", expired=True)
    elif bad == "lost_domain":
        pair = pki.issue("v2", "www.example.org")
    else:
        pair = pki.issue("v2", "*.t.example.com")
        open(pair["cert_file"], "w").close()
    swap_in(certs, "v2", pair)
    if bad == "directory":
        os.remove(certs / "v2" / "tls.pem")
        os.mkdir(certs / "v2" / "tls.pem")
    wait_until(lambda: router.metric("stamp_router_tls_certificate_reloads_total", result="refused") >= 1, 20,
               message="the reload refused")
    assert serial_of(port, ctx, "a.t.example.com") == before
    assert https_get(port, ctx, "a.t.example.com")[0] == 200
    assert "refused, still serving the previous ones" in router.stderr()


def test_mtls_both_required_and_the_tenant_from_the_certificate(pki, backends, router_proc):
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])],
                                  "routing": {"sources": ["mtls"], "unpinned": "hash"}},
                                 [pki.issue("api", "api.example.com")], client_ca_file=str(pki.ca_file))
    router = router_proc(doc, **where)
    anonymous = pki.client_context()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, anonymous, "api.example.com")
    client = pki.issue("acme-client", "client.acme", common_name="acme")
    ctx = pki.client_context()
    ctx.load_cert_chain(client["cert_file"], client["key_file"])
    status, _, body = https_get(port, ctx, "api.example.com", "/who")
    assert status == 200, body
    assert json.loads(body)["headers"]["X-Tenant-ID"] == "acme"
    assert router.metric("stamp_router_tls_handshake_failures_total", reason="client_certificate") >= 0


def test_sighup_rereads_the_certificates_in_the_supervisor_and_every_worker(live):
    router, port, _ = live
    before = router.metric("stamp_router_tls_certificate_reloads_total", result="ok")
    router.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: router.metric("stamp_router_tls_certificate_reloads_total", result="ok") == before + 1, 20,
               message="the supervisor reread them")
    # The worker serving the handshakes rereads its own copy too (its log line; the
    # counter is the supervisor's).
    wait_until(lambda: router.stderr().count("certificates reloaded (SIGHUP)") == 2, 20,
               message="the worker reread them")
    assert router.proc.poll() is None


def test_mtls_optional_lets_anonymous_clients_through_to_the_next_source(pki, backends, router_proc):
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])],
                                  "routing": {"sources": ["mtls", "header"], "unpinned": "hash"}},
                                 [pki.issue("api", "api.example.com")], client_ca_file=str(pki.ca_file),
                                 client_verify="optional")
    router_proc(doc, **where)
    status, _, body = https_get(port, pki.client_context(), "api.example.com", "/anon", headers={"X-Tenant-ID": "beta"})
    assert status == 200 and json.loads(body)["headers"]["X-Tenant-ID"] == "beta"
    client = pki.issue("acme-client", "client.acme", common_name="acme")
    ctx = pki.client_context()
    ctx.load_cert_chain(client["cert_file"], client["key_file"])
    status, _, body = https_get(port, ctx, "api.example.com", "/who", headers={"X-Tenant-ID": "beta"})
    assert status == 200 and json.loads(body)["headers"]["X-Tenant-ID"] == "acme"
    # A certificate from another CA is still refused, optional or not.
    stranger = Pki(pki.root.parent / "stranger").issue("x", "client.x", common_name="x")
    ctx = pki.client_context()
    ctx.load_cert_chain(stranger["cert_file"], stranger["key_file"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, ctx, "api.example.com")
