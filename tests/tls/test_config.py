"""listen.certificates that cannot serve are refused before anything listens, with the
field's path: `check` says so, and `serve` does not start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.router_proc import stamp, to_toml
from tests.tls.support import https_doc


@pytest.mark.parametrize("bad", ["directory", "empty"])
def test_a_certificate_file_that_is_a_directory_or_empty_is_refused_with_its_path(bad, pki, tmp_path, router_proc):
    pair = pki.issue("api", "api.example.com")
    if bad == "directory":
        pair["cert_file"] = str(tmp_path)
        want = "is a directory"
    else:
        open(pair["cert_file"], "w").close()
        want = "is empty"
    doc, _, where = https_doc({"stamps": [stamp("eu", ["127.0.0.1:9"])]}, [pair])
    path = tmp_path / "router.toml"
    path.write_text(to_toml(doc))
    check = subprocess.run([sys.executable, "-m", "router", "check", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode != 0
    assert "listen.certificates[0].cert_file" in check.stdout + check.stderr and want in check.stdout + check.stderr
    router = router_proc(doc, start=False, **where)
    router.start(wait_ready=False)
    assert router.proc.wait(30) != 0
    assert "listen.certificates[0].cert_file" in router.stderr() and want in router.stderr()
    assert "Traceback" not in router.stderr()


@pytest.mark.parametrize("listen, path, words", [
    ({"https": "127.0.0.1:8443"}, "listen.certificates", "needs at least one certificate"),
    ({"certificates": "PAIR"}, "listen.https", "no https listener"),
    ({"https": "127.0.0.1:8443", "certificates": "PAIR", "proxy_protocol": True}, "listen.proxy_protocol",
     "not supported together with listen.https"),
    ({"redirect_http": True}, "listen.redirect_http", "needs both"),
    ({"client_ca_file": "ca.pem"}, "listen.client_ca_file", "which is not set"),
])
def test_tls_keys_that_only_make_sense_together_are_refused_with_their_path(listen, path, words, pki, tmp_path):
    from router.config import load_config
    from router.errors import ConfigError
    if listen.get("certificates") == "PAIR":
        listen = {**listen, "certificates": [pki.issue("api", "api.example.com")]}
    doc = {"listen": {"http": "127.0.0.1:8080", **listen}, "stamps": [stamp("eu", ["127.0.0.1:9"])]}
    config = tmp_path / "router.toml"
    config.write_text(to_toml(doc))
    with pytest.raises(ConfigError) as exc:
        load_config(str(config))
    assert any(p == path and words in m for p, m in exc.value.errors), exc.value.errors


def test_https_alone_serves_without_a_plain_http_listener(pki, backends, router_proc):
    from tests.tls.support import https_get
    eu, = backends("eu-1")
    doc, port, where = https_doc({"stamps": [stamp("eu", [eu.address])],
                                  "routing": {"sources": ["header"], "unpinned": "hash"}},
                                 [pki.issue("api", "api.example.com")])
    router = router_proc(doc, start=False, **where)
    del router.doc["listen"]["http"]              # the test helper always sets one
    router.write_config(router.doc)
    router.start()
    assert https_get(port, pki.client_context(), "api.example.com", headers={"X-Tenant-ID": "acme"})[0] == 200
    assert "proxy https 127.0.0.1" in router.stderr() and "proxy http " not in router.stderr()
