"""`[lock] kind = "etcd"`: two updater replicas against a real etcd and a real BIND. One
is active; the other stands by. The active one cut off (stopped) is replaced within the
lease and writes nothing when it comes back; the new one killed, the first takes over.
The zone is never written by both: while one holds the lock, the other applies nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from router.dns.config import parse_dns_config
from router.errors import ConfigError
from tests.dns.servers import ZONE
from tests.dns.support import answers
from tests.dns.test_cli import StampsServer, router_stamp
from tests.support.etcd import etcd  # noqa: F401 - the fixture
from tests.support.servers import wait_until

TTL = 3


def replica_config(directory, name: str, registry_url: str, bind, etcd, record: str, remove_after: int = 1):
    directory.mkdir()
    config = directory / "dns.toml"
    config.write_text(f"""
[source]
stamps_url = "{registry_url}"
[provider]
kind = "rfc2136"
server = "{bind.address}"
zone = "{ZONE}"
tsig_key_file = "{bind.key_file}"
timeout = "1s"
[sync]
owner_id = "lock-{record}"
interval = "1s"
remove_after = {remove_after}
[lock]
kind = "etcd"
ttl = {TTL}
identity = "{name}"
etcd = {{ endpoints = ["{etcd.url}"], prefix = "/dns", timeout = "1s" }}
[[records]]
name = "{record}"
type = "A"
""")
    return config


class Replica:
    def __init__(self, tmp_path, name: str, registry_url: str, bind, etcd, record: str) -> None:
        self.dir = tmp_path / name
        self.config = replica_config(self.dir, name, registry_url, bind, etcd, record)
        self.log_path = self.dir / "stderr"
        self.proc = subprocess.Popen([sys.executable, "-m", "router", "dns", "sync", "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def registry():
    server = StampsServer([router_stamp(f"eu-{i}", f"203.0.113.{i}") for i in range(1, 5)])
    yield server
    server.close()


@pytest.fixture
def replicas(tmp_path, registry, bind, etcd, uniq):
    started: list[Replica] = []

    def make(name: str) -> Replica:
        started.append(Replica(tmp_path, name, registry.url, bind, etcd, f"lock-{uniq}"))
        return started[-1]

    make.record = f"lock-{uniq}"
    yield make
    for r in started:
        r.stop()


def addresses(*numbers: int) -> set[str]:
    return {f"203.0.113.{i}" for i in numbers}


def test_one_active_replica_and_a_takeover_within_the_lease(bind, registry, replicas):
    a = replicas("a")
    wait_until(lambda: a.count("active") == 1, 20, message="a active")
    b = replicas("b")
    wait_until(lambda: b.count("held by a: standing by") == 1, 20, message="b standing by")
    wait_until(lambda: answers(bind, replicas.record, "A") == addresses(1, 2, 3, 4), 20, message="a's records")

    registry.set_health("eu-1", False)
    wait_until(lambda: answers(bind, replicas.record, "A") == addresses(2, 3, 4), 20, message="a's update")
    # a is between passes (its pass logged its writes): stopped there, it is a replica
    # cut off from etcd that has not noticed yet.
    wait_until(lambda: a.count("applied") >= 2, 10, message="a's pass ended")
    a.proc.send_signal(signal.SIGSTOP)
    a_writes = a.count("applied")
    assert b.count("applied") == 0

    wait_until(lambda: b.count("active") == 1, TTL + 15, message="b takes over once a's lease ran out")
    registry.set_health("eu-2", False)
    wait_until(lambda: answers(bind, replicas.record, "A") == addresses(3, 4), 20, message="b's update")

    # a comes back: its lease is gone; it finds out before writing anything.
    a.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: a.count("lost") >= 1, 20, message="a sees it lost the lock")
    wait_until(lambda: a.count("held by b: standing by") == 1, 20, message="a standing by")
    registry.set_health("eu-3", False)
    wait_until(lambda: answers(bind, replicas.record, "A") == addresses(4), 20, message="b's second update")
    assert a.count("applied") == a_writes, "a wrote while b held the lock"
    b_writes = b.count("applied")

    b.proc.kill()                  # no revoke: a waits out b's lease
    b.proc.wait()
    wait_until(lambda: a.count("active") == 2, TTL + 15, message="a takes over again")
    registry.set_health("eu-1", True)
    wait_until(lambda: answers(bind, replicas.record, "A") == addresses(1, 4), 20, message="a's update")
    assert b.count("applied") == b_writes


def test_a_clean_stop_hands_over_at_once(bind, registry, replicas):
    a = replicas("a")
    wait_until(lambda: a.count("active") == 1, 20, message="a active")
    b = replicas("b")
    wait_until(lambda: b.count("standing by") == 1, 20, message="b standing by")
    a.stop()
    assert "released" in a.log()
    # Well within the lease: the revoked lease deleted the key, and b was watching it.
    wait_until(lambda: b.count("active") == 1, TTL - 0.5, message="b active at once")


def test_once_refuses_while_another_replica_is_active(bind, registry, replicas):
    a = replicas("a")
    wait_until(lambda: a.count("active") == 1, 20, message="a active")
    once = subprocess.run([sys.executable, "-m", "router", "dns", "sync", "-c", str(a.config), "--once"],
                          capture_output=True, text=True, timeout=60)
    assert once.returncode == 1 and "another updater (a) holds the lock" in once.stderr


def test_the_hysteresis_counts_go_on_from_one_replica_to_the_other(tmp_path, bind, registry, etcd, uniq):
    record = f"counts-{uniq}"
    configs = [replica_config(tmp_path / n, n, registry.url, bind, etcd, record, remove_after=3) for n in ("a", "b")]

    def once(config) -> None:
        done = subprocess.run([sys.executable, "-m", "router", "dns", "sync", "-c", str(config), "--once"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    once(configs[0])
    assert answers(bind, record, "A") == addresses(1, 2, 3, 4)
    registry.set_health("eu-2", False)
    seen = []
    for config in (configs[1], configs[0], configs[1]):     # replicas in turn, each one pass
        once(config)
        seen.append("203.0.113.2" in answers(bind, record, "A"))
    # remove_after = 3 across replicas: each went on from the count the other left in etcd.
    assert seen == [True, True, False]
    stored = json.loads(etcd.get(f"/dns/dns-state/lock-{record}"))
    assert stored["stamps"]["eu-2"] == {"state": "down", "failures": 3}
    assert not (tmp_path / "a" / "state").exists() and not (tmp_path / "b" / "state").exists()


def test_lock_config_errors_have_paths():
    doc = {"source": {"stamps_url": "http://127.0.0.1:9/stamps"},
           "provider": {"kind": "rfc2136", "server": "127.0.0.1:53", "zone": ZONE, "tsig_key_file": "k"},
           "sync": {"owner_id": "x"}, "records": [{"name": "api", "type": "A"}],
           "lock": {"kind": "zookeeper", "ttl": 1, "etcd": {"endpoints": ["ftp://x"]}}}
    with pytest.raises(ConfigError) as exc:
        parse_dns_config(doc)
    paths = {p for p, _ in exc.value.errors}
    assert {"lock.kind", "lock.ttl", "lock.etcd.endpoints[0]"} <= paths, paths
    doc["lock"] = {"kind": "etcd", "etcd": {"endpoints": ["http://127.0.0.1:2379"]}}
    doc["sync"]["state_file"] = "counts.json"
    with pytest.raises(ConfigError) as exc:
        parse_dns_config(doc)
    assert exc.value.errors == [("sync.state_file", "with [lock], the hysteresis counts live in etcd beside the "
                                 "lock, where every replica reads them: remove state_file")]
