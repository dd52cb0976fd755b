"""The command line, run as a subprocess: `check`, `route` and `schema`."""

import argparse
import json
import pathlib
import re
import subprocess
import sys

import pytest

from router.config import json_schema

REPO = pathlib.Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "router", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config", ["config/demo.toml", "config/example.toml"])
def test_check_accepts_the_shipped_configs(config):
    run = cli("check", config)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"ok: {config}: version ")
    assert run.stderr == ""


BROKEN = """
[routing]
sources = ["subdomain", "header"]
domains = ["stamps.example.com"]
anonymous = "stamp:nowhere"

[timeouts]
conect = "2s"

[[stamps]]
name = "eu-1"
region = "eu"
backends = ["10.1.0.10:0"]
failover = ["us-1"]

[[stamps]]
name = "us-1"
region = "us"
backends = ["10.2.0.10:8080"]

[tenants]
acme = "eu-9"
"""


def test_check_reports_every_error_one_a_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    run = cli("check", str(path))
    assert run.returncode == 1
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    expected = {
        "timeouts.conect": "unknown key",
        "stamps[0].backends[0]": "port must be 1 to 65535",
        "stamps[0].failover[0]": "residency 'us', not 'eu'",
        "routing.anonymous": "unknown stamp 'nowhere'",
        "tenants.acme": "unknown stamp 'eu-9'",
    }
    assert len(lines) == len(expected), run.stderr
    for line in lines:
        path_part, _, message = line.partition(": ")
        assert path_part in expected, line
        assert expected.pop(path_part) in message, line
    assert not expected


def test_check_on_unreadable_file(tmp_path):
    run = cli("check", str(tmp_path / "absent.toml"))
    assert run.returncode == 1
    assert run.stderr.startswith("(document): cannot read")


def test_route_by_tenant():
    run = cli("route", "-c", "config/demo.toml", "--tenant", "acme")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["tenant"], out["source"], out["stamp"], out["reason"]) == ("acme", "header", "eu-1", "pinned")
    assert out["considered"]


def test_route_by_host():
    run = cli("route", "-c", "config/demo.toml", "--host", "x.localhost")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["tenant"], out["source"], out["reason"]) == ("x", "subdomain", "hash")
    assert out["stamp"] in ("eu-1", "eu-2", "us-1")


def test_route_refusal_exits_2_with_the_decision():
    run = cli("route", "-c", "config/demo.toml", "--tenant", "initech", "--method", "POST")
    assert run.returncode == 2
    out = json.loads(run.stdout)
    assert (out["status"], out["error"], out["tenant"]) == (403, "tenant_read_only", "initech")


def test_schema_prints_the_json_schema():
    run = cli("schema")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == json_schema()


def test_version_names_the_release_and_the_build():
    run = cli("--version")
    assert run.returncode == 0
    assert re.fullmatch(r"stamp-router \S+ \((pure Python|compiled): [^)]+\)\n", run.stdout), run.stdout


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_subcommand_has_a_paragraph_and_every_option_help_with_its_default():
    from router.cli import build_parser
    for path, parser in _parsers(build_parser()):
        if path:
            assert parser.description and len(parser.description) > 30, path
        text = parser.format_help()
        for action in parser._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (path, action.dest)
            if action.option_strings and action.default not in (None, False) and action.dest != "version":
                flat = " ".join(text.split())
                assert f"default: {action.default})" in flat or f"default {action.default})" in flat, (path, action.dest)


def test_route_with_tenant_and_host_shows_which_source_wins():
    run = cli("route", "-c", "config/demo.toml", "--tenant", "acme", "--host", "newco.localhost")
    out = json.loads(run.stdout)
    # routing.sources is ["subdomain", "header"]: the subdomain is tried first and wins
    assert (out["tenant"], out["source"]) == ("newco", "subdomain")
    assert out["considered"][0] == "subdomain: tenant 'newco'"


def test_dns_check_validates_a_dns_config_offline(tmp_path):
    run = cli("dns", "check", "config/dns-example.toml")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok: config/dns-example.toml: provider rfc2136, zone example.com., ")
    bad = tmp_path / "dns.toml"
    bad.write_text((REPO / "config" / "dns-example.toml").read_text().replace('interval = "10s"', 'interval = "-5s"', 1))
    run = cli("dns", "check", str(bad))
    assert run.returncode == 1
    assert "sync.interval: a duration cannot be negative: '-5s'" in run.stderr


def test_check_on_a_dns_config_points_to_dns_check():
    run = cli("check", "config/dns-example.toml")
    assert run.returncode == 1
    assert run.stderr == ("config/dns-example.toml is a DNS updater config, not a router config: "
                          "check it with `stamp-router dns check config/dns-example.toml`\n")


def test_schema_errors_read_as_the_operators_words(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[listen]\nmax_connections = "lots"\n[timeouts]\nconnect = "-2s"\n[routing]\nunpinned = "maybe"\n'
                    '[[stamps]]\nname = "a"\nregion = "eu"\nbackends = []\n')
    run = cli("check", str(path))
    assert run.stderr.splitlines() == [
        "listen.max_connections: must be a whole number, not 'lots'",
        "routing.unpinned: must be one of 'hash' or 'reject', not 'maybe'",
        "timeouts.connect: a duration cannot be negative: '-2s'",
        "stamps[0].backends: needs at least 1 item",
    ]


def _smallest_config() -> str:
    doc = (REPO / "docs" / "config.md").read_text()
    section = doc.split("## The smallest config", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_smallest_config_of_the_docs_is_accepted_and_served(tmp_path):
    import threading
    import tomllib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.router_proc import RouterProcess

    text = _smallest_config()
    (tmp_path / "smallest.toml").write_text(text)
    run = cli("check", str(tmp_path / "smallest.toml"))
    assert (run.returncode, run.stderr) == (0, ""), run.stderr

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    [stamp] = tomllib.loads(text)["stamps"]
    stamp["backends"] = [f"127.0.0.1:{backend.server_address[1]}"]
    # Only the addresses are the test's own: listeners on free ports, state in tmp_path.
    router = RouterProcess(tmp_path, {"stamps": [stamp]}).start()
    try:
        status, headers, body = router.request("GET", "/", headers={"X-Tenant-ID": "acme"})
        assert (status, body) == (200, b"ok")
        assert headers.get("x-stamp") == "main"
        status, _, body = router.request("GET", "/", headers={"Host": "acme.localhost"})
        assert status == 404 and b"no_route" in body       # no domains: no subdomain routing
    finally:
        router.stop()
        backend.shutdown()
        backend.server_close()
