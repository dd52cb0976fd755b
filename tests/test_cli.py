"""The command line, run as a subprocess: `check`, `route` and `schema`."""

import json
import pathlib
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
