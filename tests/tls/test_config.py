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
