"""DNS updater faults (docs/operations.md, "Faults the router survives"), against real
BIND and Knot: the hysteresis counts kept between `dns sync --once` runs without a
state_file, and a server that answers SERVFAIL, never answers, or refuses the TSIG key
in the middle of a pass leaves the zone exactly as it was and says so.

The faults at the moment of the write come from a small TCP relay in front of the real
server: it passes the zone transfer through and, once armed, acts on the UPDATE: answers
it SERVFAIL (signed with the key, as a failing server does), holds it unanswered, or
passes it on signed with another secret so that the real server refuses the key.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys

import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.tsigkeyring
import pytest

from router.dns.counts import default_path
from tests.dns.conftest import FakeRegistry, bind, knot, make_config, rfc2136_provider, stamp, uniq  # noqa: F401 - fixtures
from tests.dns.servers import ZONE
from tests.dns.support import answers, run, updater
from tests.dns.test_cli import StampsServer, router_stamp, write_config
from tests.support.relay import TcpRelay

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- hysteresis counts kept between --once runs ---------------------------------------

def cron_run(config: str) -> subprocess.CompletedProcess:
    """One `stamp-router dns sync --once`, as cron runs it: a new process each time."""
    return subprocess.run([sys.executable, "-m", "router", "dns", "sync", "-c", config, "--once"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


def cron_config(tmp_path, registry, server, name: str, **sync) -> str:
    return write_config(tmp_path, registry.url, server.address, server.key_file, name, owner="cron",
                        **{"remove_after": 3, **sync})


@pytest.fixture
def registry():
    server = StampsServer([router_stamp(f"eu-{i}", f"203.0.113.{i}") for i in range(1, 4)])
    yield server
    server.close()


def test_dns_once_without_state_file_removes_a_dead_stamp_after_remove_after_runs(bind, registry, tmp_path, uniq):
    name = f"cron-{uniq}"
    config = cron_config(tmp_path, registry, bind, name)
    first = cron_run(config)
    assert first.returncode == 0, first.stderr
    assert answers(bind, name, "A") == {"203.0.113.1", "203.0.113.2", "203.0.113.3"}
    state = default_path(config, f"cron-{name}")
    assert state == str(tmp_path / "state" / f"dns-cron-{name}.json") and os.path.exists(state)

    registry.set_health("eu-2", False)
    seen = []
    for _ in range(3):                       # remove_after = 3: gone at the third run, not before
        done = cron_run(config)
        assert done.returncode == 0, done.stderr
        seen.append("203.0.113.2" in answers(bind, name, "A"))
    assert seen == [True, True, False]
    assert json.load(open(state))["stamps"]["eu-2"] == {"state": "down", "failures": 3}

    registry.set_health("eu-2", True)        # back at the first healthy run
    assert cron_run(config).returncode == 0
    assert answers(bind, name, "A") == {"203.0.113.1", "203.0.113.2", "203.0.113.3"}


def test_dns_counts_that_cannot_be_kept_end_the_pass_before_any_write(bind, registry, tmp_path, uniq):
    name = f"nostate-{uniq}"
    config = cron_config(tmp_path, registry, bind, name)
    assert cron_run(config).returncode == 0
    registry.set_health("eu-3", False)
    # state/ is a file: the default state file can be neither read nor written (a
    # permission test would not hold as root, which these tests may run as).
    (tmp_path / "state").rename(tmp_path / "state.d")
    (tmp_path / "state").write_text("not a directory")
    for _ in range(2):                       # not once, and not counted as a first run the next time
        done = cron_run(config)
        assert done.returncode == 1
        assert "state_error: cannot read the hysteresis counts in" in done.stderr, done.stderr
        assert "Not a directory" in done.stderr
    assert answers(bind, name, "A") == {"203.0.113.1", "203.0.113.2", "203.0.113.3"}


def test_dns_counts_that_cannot_be_written_end_the_pass_before_any_write(bind, registry, tmp_path, uniq):
    name = f"nowrite-{uniq}"
    # Nothing can be created in /proc, not even by root: the first save fails.
    config = cron_config(tmp_path, registry, bind, name, state_file="/proc/self/dns-state.json")
    done = cron_run(config)
    assert done.returncode == 1
    assert "state_error: cannot keep the hysteresis counts in /proc/self/dns-state.json" in done.stderr, done.stderr
    assert answers(bind, name, "A") == set()          # the create it planned was not written


# -- the server fails in the middle of a pass -----------------------------------------

class UpdateFaults(TcpRelay):
    """A TCP relay to a real DNS server that, once armed, acts on UPDATE messages only.

    mode "servfail": answer SERVFAIL, signed with the key (as the server itself would);
    "mute": never answer; "badkey": pass it on signed with another secret, so the real
    server refuses the signature. `updates` counts the UPDATEs seen.
    """

    WRONG = dns.tsigkeyring.from_text({"updater-key": ("hmac-sha256", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")})

    def __init__(self, server) -> None:
        super().__init__(server.port)
        self.address = f"127.0.0.1:{self.port}"
        with open(server.key_file) as fh:
            secret = fh.read().split('secret "', 1)[1].split('"', 1)[0]
        self.keyring = dns.tsigkeyring.from_text({"updater-key": ("hmac-sha256", secret)})
        self.mode: str | None = None
        self.updates = 0

    def upward(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        while (head := _recv_exact(client, 2)) is not None:
            wire = _recv_exact(client, int.from_bytes(head, "big"))
            if wire is None:
                return
            if (wire[2] >> 3) & 0xF == dns.opcode.UPDATE:
                self.updates += 1
                wire = self._fault(wire, client)
                if wire is None:
                    continue
            upstream.sendall(len(wire).to_bytes(2, "big") + wire)

    def _fault(self, wire: bytes, client: socket.socket) -> bytes | None:
        """What goes on to the server (None: nothing)."""
        if self.mode is None:
            return wire
        msg = dns.message.from_wire(wire, keyring=self.keyring)
        if self.mode == "servfail":
            answer = dns.message.make_response(msg)
            answer.set_rcode(dns.rcode.SERVFAIL)
            out = answer.to_wire()
            client.sendall(len(out).to_bytes(2, "big") + out)
            return None
        if self.mode == "mute":
            return None
        msg.use_tsig(self.WRONG, keyname=msg.keyname)      # "badkey"
        return msg.to_wire()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def zone_content(server) -> list[str]:
    """The whole zone as the server holds it (SOA serial included), read past the relay."""
    keyring = dns.tsigkeyring.from_file(server.key_file)
    lines = []
    for message in dns.query.xfr("127.0.0.1", ZONE, port=server.port, keyring=keyring,
                                 keyname=next(iter(keyring)), lifetime=10):
        lines += [line for rrset in message.answer for line in rrset.to_text().splitlines()]
    return sorted(set(lines))


EU = [stamp("eu-1", public=["203.0.113.10"]), stamp("eu-2", public=["203.0.113.20"])]
US = [stamp("us-1", "us", public=["198.51.100.10"]), stamp("us-2", "us", public=["198.51.100.20"])]
HINTS = {
    "servfail": "answered SERVFAIL",
    "mute": "no answer within 1s",
    "badkey": "the server rejected the signature of TSIG key updater-key (BADSIG)",
}


@pytest.fixture(params=["bind", "knot"])
def faulty(request):
    server = request.getfixturevalue(request.param)
    relay = UpdateFaults(server)
    yield server, relay
    relay.close()


@pytest.mark.parametrize("mode", ["servfail", "mute", "badkey"])
def test_dns_server_failing_mid_pass_leaves_the_zone_as_it_was(faulty, mode, uniq):
    server, relay = faulty
    provider = dict(rfc2136_provider(server), server=relay.address, timeout="1s")
    records = [{"name": f"eu-{uniq}", "type": "A", "region": "eu"}, {"name": f"us-{uniq}", "type": "A", "region": "us"}]
    registry = FakeRegistry(EU + US)
    cfg = make_config(provider, records, owner_id=f"fault-{uniq}", remove_after=1)
    upd = updater(cfg, registry)
    assert run(upd.sync_once()).result == "ok"
    before = zone_content(server)

    # A plan of two keys (one stamp leaves each): the server fails at the write.
    registry.set_health("eu-2", False)
    registry.set_health("us-1", False)
    relay.mode = mode
    updates = relay.updates
    result = run(upd.sync_once())
    assert result.result == "provider_error" and HINTS[mode] in result.message, result.message
    assert ("the zone is as it was" if mode != "mute" else "whole or not at all") in result.message
    assert relay.updates == updates + 1                  # the plan was one UPDATE: all or nothing
    assert zone_content(server) == before

    relay.mode = None                                    # the server recovers: the next pass writes
    assert run(upd.sync_once()).result == "ok"
    assert answers(server, f"eu-{uniq}", "A") == {"203.0.113.10"}
    assert answers(server, f"us-{uniq}", "A") == {"198.51.100.20"}


def test_dns_servfail_from_bind_itself_applies_no_part_of_the_plan(bind, uniq):
    # BIND answers SERVFAIL to an RRset of more than 100 records: one key of the plan
    # grows past it while another shrinks. The shrink must not be applied alone.
    big = [stamp(f"big-{i}", "big", public=[f"10.9.{i // 250}.{i % 250 + 1}"], healthy=i < 2) for i in range(101)]
    records = [{"name": f"eu-{uniq}", "type": "A", "region": "eu"}, {"name": f"zz-{uniq}", "type": "A", "region": "big"}]
    registry = FakeRegistry(EU + big)
    cfg = make_config(rfc2136_provider(bind), records, owner_id=f"big-{uniq}", remove_after=1)
    upd = updater(cfg, registry, out=io.StringIO())
    assert run(upd.sync_once()).result == "ok"
    assert len(answers(bind, f"zz-{uniq}", "A")) == 2
    before = zone_content(bind)

    registry.set_health("eu-2", False)
    for i in range(101):
        registry.set_health(f"big-{i}", True)
    result = run(upd.sync_once())
    assert result.result == "provider_error" and "answered SERVFAIL" in result.message, result.message
    assert zone_content(bind) == before
    assert answers(bind, f"eu-{uniq}", "A") == {"203.0.113.10", "203.0.113.20"}
