"""`stamp-router dns sync --once` end to end: exit codes, printed plans, metrics textfile."""

from __future__ import annotations

import json
import logging
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from router.cli import main
from tests.dns.servers import ZONE, free_port
from tests.dns.support import answers


class StampsServer:
    """GET /stamps from a thread (the CLI runs its own event loop)."""

    def __init__(self, stamps):
        self.doc = {"version": "cli-test", "stamps": stamps}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps(outer.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stamps"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set_health(self, name, healthy):
        for s in self.doc["stamps"]:
            if s["name"] == name:
                s["healthy"] = healthy

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def router_stamp(name, address, healthy=True):
    return {"name": name, "region": "eu", "residency": "eu", "state": "active", "weight": 100,
            "public": [address], "failover": [], "healthy": healthy, "panic": False, "backends": []}


@pytest.fixture
def registry():
    server = StampsServer([router_stamp(f"eu-{i}", f"203.0.113.{i}") for i in range(1, 5)])
    yield server
    server.close()


def write_config(tmp_path, url, server_address, key_file, name, *, owner: str = "cli", **sync):
    extra = "\n".join(f"{k} = {json.dumps(v)}" for k, v in sync.items())
    path = tmp_path / "dns.toml"
    path.write_text(f"""
[source]
stamps_url = "{url}"
[provider]
kind = "rfc2136"
server = "{server_address}"
zone = "{ZONE}"
tsig_key_file = "{key_file}"
timeout = "2s"
[sync]
owner_id = "{owner}-{name}"
{extra}
[metrics]
textfile = "metrics.prom"
[[records]]
name = "{name}"
type = "A"
""")
    return str(path)


def test_dry_run_then_once_then_a_refused_plan_then_force(bind, registry, tmp_path, uniq, capsys):
    name = f"cli-{uniq}"
    cfg = write_config(tmp_path, registry.url, bind.address, bind.key_file, name,
                       remove_after=1, min_owned_records=4, max_change_fraction=0.3)
    all4 = {f"203.0.113.{i}" for i in range(1, 5)}

    assert main(["dns", "sync", "-c", cfg, "--once", "--dry-run"]) == 0
    assert f"+ create {name}.{ZONE} A" in capsys.readouterr().out
    assert answers(bind, name, "A") == set()

    assert main(["dns", "sync", "-c", cfg, "--once"]) == 0
    assert answers(bind, name, "A") == all4
    metrics = (tmp_path / "metrics.prom").read_text()
    assert 'stamp_dns_changes_applied_total{action="create"} 1.0' in metrics
    assert 'stamp_dns_last_sync_result{result="ok"} 1.0' in metrics

    registry.set_health("eu-1", False)
    registry.set_health("eu-2", False)
    capsys.readouterr()
    assert main(["dns", "sync", "-c", cfg, "--once", "--dry-run"]) == 2
    assert "REFUSED without --force" in capsys.readouterr().out
    assert main(["dns", "sync", "-c", cfg, "--once"]) == 2
    assert answers(bind, name, "A") == all4
    assert "stamp_dns_plans_refused_total 1.0" in (tmp_path / "metrics.prom").read_text()

    assert main(["dns", "sync", "-c", cfg, "--once", "--force"]) == 0
    assert answers(bind, name, "A") == {"203.0.113.3", "203.0.113.4"}


def test_a_bad_config_exits_1_with_every_error_and_its_path(tmp_path, capsys):
    path = tmp_path / "dns.toml"
    path.write_text('[source]\nstamps_url = "ftp://x"\n[provider]\nkind = "rfc2136"\n[sync]\nowner_id = "a b"\n')
    assert main(["dns", "sync", "-c", str(path), "--once"]) == 1
    err = capsys.readouterr().err
    for expected in ("source.stamps_url: 'ftp://x' does not have the required form", "provider.server: required, but not set",
                     "provider.zone: required, but not set", "sync.owner_id: 'a b' does not have the required form",
                     "records: required, but not set"):
        assert f"{path}: {expected}" in err


def test_a_dead_dns_server_exits_1_with_a_precise_message(registry, tmp_path, bind, caplog):
    cfg = write_config(tmp_path, registry.url, f"127.0.0.1:{free_port()}", bind.key_file, "dead")
    with caplog.at_level(logging.ERROR, logger="stamp_router.dns"):
        assert main(["dns", "sync", "-c", cfg, "--once"]) == 1
    assert "connection refused: is the server running on that port?" in caplog.text


def test_a_dead_registry_exits_1_and_changes_nothing(tmp_path, bind, caplog, uniq):
    url = f"http://127.0.0.1:{free_port()}/stamps"
    cfg = write_config(tmp_path, url, bind.address, bind.key_file, f"noreg-{uniq}")
    with caplog.at_level(logging.ERROR, logger="stamp_router.dns"):
        assert main(["dns", "sync", "-c", cfg, "--once"]) == 1
    assert f"registry_error: cannot read registry {url}" in caplog.text
    assert 'stamp_dns_last_sync_result{result="registry_error"} 1.0' in (tmp_path / "metrics.prom").read_text()


def _files(*directories, skip=()) -> dict[str, bytes]:
    out = {}
    for directory in directories:
        for path in sorted(pathlib.Path(directory).rglob("*")):
            if path.is_file() and str(path) not in skip:
                out[str(path)] = path.read_bytes()
    return out


def test_dry_run_changes_nothing_anywhere(bind, registry, tmp_path, uniq, capsys):
    """Zone, state file and metrics textfile are byte for byte what they were, and the
    hysteresis counts a dry run saw do not count for the next real run."""
    name = f"dry-{uniq}"
    cfg = write_config(tmp_path, registry.url, bind.address, bind.key_file, name,
                       remove_after=2, state_file=str(tmp_path / "dns-state.json"))
    assert main(["dns", "sync", "-c", cfg, "--once"]) == 0
    all4 = {f"203.0.113.{i}" for i in range(1, 5)}
    assert answers(bind, name, "A") == all4
    registry.set_health("eu-1", False)

    before = _files(tmp_path, bind.directory, skip={bind.log_path})
    soa = answers(bind, ZONE, "SOA")
    assert {"dns-state.json", "metrics.prom"} <= {pathlib.Path(p).name for p in before}
    for _ in range(3):
        assert main(["dns", "sync", "-c", cfg, "--once", "--dry-run"]) == 0
    assert "- delete" not in capsys.readouterr().out        # eu-1 is counting, still published
    assert _files(tmp_path, bind.directory, skip={bind.log_path}) == before
    assert answers(bind, ZONE, "SOA") == soa
    assert answers(bind, name, "A") == all4

    # The first real run after them is the first unhealthy read: eu-1 stays (remove_after = 2).
    assert main(["dns", "sync", "-c", cfg, "--once"]) == 0
    assert answers(bind, name, "A") == all4
    assert main(["dns", "sync", "-c", cfg, "--once"]) == 0
    assert answers(bind, name, "A") == all4 - {"203.0.113.1"}
