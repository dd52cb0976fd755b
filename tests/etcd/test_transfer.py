"""`stamp-router etcd import` and `export` against a real etcd: only the difference is
written, in transactions within etcd's limits; a dry run writes nothing; an invalid file
writes nothing; export gives back what was imported."""

from __future__ import annotations

import json
import subprocess
import sys

from router.config import load_config
from router.etcd.layout import Layout
from router.etcd.client import KeyValue
from router.etcd.transfer import plan_import
from tests.control.support import ROUTING

PREFIX = "/t"
CONFIG = """
version = "v1"
tenants_file = "pins.json"
[listen]
http = "127.0.0.1:1"
""" + ROUTING.decode() + """
[tenants]
acme = { stamp = "eu-2", mode = "read-only" }
"""


def write_config(tmp_path, pins: dict) -> str:
    (tmp_path / "pins.json").write_text(json.dumps(pins))
    path = tmp_path / "router.toml"
    path.write_text(CONFIG)
    return str(path)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "router", "etcd", *args], capture_output=True, text=True, timeout=120)


def test_the_plan_orders_a_config_that_adds_stamps_first_and_batches_within_limits(tmp_path):
    path = write_config(tmp_path, {f"t{i}": "eu-1" for i in range(300)})
    layout = Layout(PREFIX)
    held = [KeyValue(layout.config_key, b'{"stamps": [{"name": "eu-1"}]}', 1),
            KeyValue(layout.tenant_key("t0"), b'"eu-1"', 2), KeyValue(layout.tenant_key("gone"), b'"eu-1"', 3)]
    plan = plan_import(layout, b"{}", load_config(path), held, 3)
    assert (len(plan.puts), plan.deletes, plan.unchanged) == (300, [layout.tenant_key("gone")], 1)
    assert plan.config_first
    batches = plan.batches(max_ops=100, max_bytes=10_000)
    assert batches[0] == [{"request_put": {"key": "L3QvY29uZmln", "value": "e30="}}]
    assert all(len(b) <= 100 for b in batches) and sum(map(len, batches)) == 1 + 300 + 1
    assert "request_delete_range" in batches[-1][-1]


def test_import_then_export_round_trips(etcd, tmp_path):
    pins = {f"tenant-{i}": "eu-1" if i % 2 else "eu-2" for i in range(1000)}
    path = write_config(tmp_path, pins)
    where = ["--endpoints", etcd.url, "--prefix", PREFIX]

    dry = cli("import", path, *where, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert (plan["dry_run"], plan["config"], plan["pins_put"]) == (True, "changed", 1001)
    assert etcd.get(f"{PREFIX}/config") is None

    done = cli("import", path, *where, "--max-txn-ops", "64")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["transactions"] == 1 + 16
    stored = json.loads(etcd.get(f"{PREFIX}/config"))
    assert stored["version"] == "v1" and "tenants" not in stored and "listen" not in stored
    assert json.loads(etcd.get(f"{PREFIX}/tenants/acme")) == {"stamp": "eu-2", "mode": "read-only"}
    assert json.loads(etcd.get(f"{PREFIX}/tenants/tenant-7")) == "eu-1"

    rev = etcd.revision()
    again = cli("import", path, *where)
    assert json.loads(again.stdout)["transactions"] == 0 and etcd.revision() == rev     # nothing to write

    del pins["tenant-3"]
    pins["tenant-4"] = "eu-1"
    write_config(tmp_path, pins)
    change = json.loads(cli("import", path, *where).stdout)
    assert (change["pins_put"], change["pins_deleted"], change["config"]) == (1, 1, "unchanged")
    assert etcd.get(f"{PREFIX}/tenants/tenant-3") is None

    out = tmp_path / "exported.json"
    exported = cli("export", *where, "-o", str(out), "--tenants-file", str(tmp_path / "exported-pins.json"))
    assert exported.returncode == 0, exported.stderr
    doc = json.loads(out.read_text())
    assert doc["tenants_file"] == "exported-pins.json" and doc["version"] == "v1"
    table = json.loads((tmp_path / "exported-pins.json").read_text())
    assert len(table) == 1000 and table["tenant-4"] == "eu-1" and table["acme"]["mode"] == "read-only"
    assert subprocess.run([sys.executable, "-m", "router", "check", str(out)], capture_output=True).returncode == 0


def test_an_invalid_file_writes_nothing(etcd, tmp_path):
    path = write_config(tmp_path, {"t1": "us-9"})
    result = cli("import", path, "--endpoints", etcd.url, "--prefix", PREFIX)
    assert result.returncode == 1 and "us-9" in result.stderr
    assert etcd.get(f"{PREFIX}/config") is None


def test_etcd_down_is_an_error_with_its_cause(tmp_path):
    path = write_config(tmp_path, {})
    result = cli("export", "--endpoints", "http://127.0.0.1:9", "--prefix", PREFIX)
    assert result.returncode == 1 and "127.0.0.1:9" in result.stderr
    result = cli("import", path, "--endpoints", "http://127.0.0.1:9")
    assert result.returncode == 1 and "127.0.0.1:9" in result.stderr
