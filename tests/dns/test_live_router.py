"""Issue 7, live: real backends, `stamp-router serve` probing them, real BIND, and
`stamp-router dns sync` (the loop, not --once) reading the router's admin GET /stamps.

Kill one stamp's backends: the router's probes mark the stamp unhealthy, the updater
counts `remove_after` unhealthy reads and takes the stamp's address out of the A set, all
within fall x probe interval + probe timeout + sync interval x (remove_after + 1) plus
scheduling slack. Bring the backends back (same ports): the address returns. The other
stamps' addresses are in the set at every poll. Nothing sleeps to synchronise: every wait
polls BIND or /stamps with a deadline derived from the configs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.dns.servers import ZONE
from tests.dns.support import answers
from tests.support.router_proc import stamp as router_stamp
from tests.support.servers import start_backend, stop_backend, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Router probes (per stamp) and updater loop, in milliseconds as the configs spell them.
# The timeout is long on purpose: the backends live in the pytest process, which a
# garbage collection can pause for 0.3 s; a dead backend here refuses the connect.
PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, RISE, FALL = 200, 1000, 1, 2
SYNC_INTERVAL_MS, REMOVE_AFTER = 300, 2
HEALTH = {"enabled": True, "path": "/healthz", "interval": f"{PROBE_INTERVAL_MS}ms",
          "timeout": f"{PROBE_TIMEOUT_MS}ms", "rise": RISE, "fall": FALL}
# Process wake-ups, AXFR + UPDATE + read-back per pass, and the test's own polling, on a
# loaded 2-core machine with three processes and BIND sharing it.
SLACK = 10.0
PROBE, TIMEOUT, SYNC = PROBE_INTERVAL_MS / 1000, PROBE_TIMEOUT_MS / 1000, SYNC_INTERVAL_MS / 1000
# The bound: the router notices (fall x interval + timeout), then the updater
# needs `remove_after` unhealthy reads, one sync interval apart, plus the pass in flight.
DOWN_BOUND = FALL * PROBE + TIMEOUT + SYNC * (REMOVE_AFTER + 1) + SLACK
# Back: `rise` good probes, then the first healthy read publishes it again.
UP_BOUND = RISE * PROBE + TIMEOUT + SYNC * 2 + SLACK
# First publication: the updater's start (its imports take seconds on a busy machine) and
# a first pass. Not part of the bound.
START_BOUND = SYNC * 2 + SLACK + 10.0

ADDRESSES = {"eu-1": "203.0.113.11", "eu-2": "203.0.113.12", "eu-3": "203.0.113.13"}
VICTIM = "eu-2"


def router_doc(stamps: list[dict]) -> dict:
    return {"routing": {"sources": ["header"], "unpinned": "reject"}, "stamps": stamps,
            "tenants": {"acme": stamps[0]["name"]}}


def stamp_status(router, name: str) -> dict:
    return next(s for s in router.admin_json("/stamps")["stamps"] if s["name"] == name)


def test_a_dead_stamp_leaves_the_record_and_returns(bg, backends, router_proc, bind, tmp_path, uniq):
    pool = {"eu-1": backends("eu-1a"), "eu-2": backends("eu-2a", "eu-2b"), "eu-3": backends("eu-3a")}
    router = router_proc(router_doc([
        router_stamp(name, [b.address for b in pool[name]], public=[ADDRESSES[name]], health=HEALTH)
        for name in pool]))

    record = f"live-{uniq}"
    fqdn = f"{record}.{ZONE}"
    config = tmp_path / "dns.toml"
    config.write_text(f"""
[source]
stamps_url = "http://127.0.0.1:{router.admin_port}/stamps"
timeout = "2s"

[provider]
kind = "rfc2136"
server = "{bind.address}"
zone = "{ZONE}"
tsig_key_file = "{bind.key_file}"
timeout = "3s"

[sync]
interval = "{SYNC_INTERVAL_MS}ms"
owner_id = "live-{uniq}"
remove_after = {REMOVE_AFTER}

[[records]]
name = "{record}"
type = "A"
""")
    out_path, err_path = tmp_path / "dns.stdout", tmp_path / "dns.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        updater = subprocess.Popen([sys.executable, "-m", "router", "dns", "sync", "-c", str(config)],
                                   cwd=REPO, stdout=out, stderr=err)

    def logs() -> str:
        return (f"\n--- updater stdout ---\n{out_path.read_text(errors='replace')}"
                f"\n--- updater stderr ---\n{err_path.read_text(errors='replace')[-3000:]}"
                f"\n--- router stderr ---\n{router.stderr()[-3000:]}")

    def wait(predicate, timeout: float, what: str) -> None:
        try:
            wait_until(predicate, timeout, interval=0.05, message=what)
        except AssertionError as exc:       # with the logs as they are at the deadline
            raise AssertionError(f"{exc}{logs()}") from None

    everyone = set(ADDRESSES.values())
    others = everyone - {ADDRESSES[VICTIM]}
    polls = 0               # polls since all three were first seen
    published = False

    def served() -> set[str]:
        """The A set BIND answers now; once all three were seen, the other stamps must be
        in it at every poll."""
        nonlocal polls, published
        if updater.poll() is not None:
            raise AssertionError(f"the updater exited with {updater.returncode}{logs()}")
        got = answers(bind, fqdn, "A")
        published = published or got == everyone
        if published:
            polls += 1
            assert others <= got, f"a healthy stamp left the record: {sorted(got)}{logs()}"
        return got

    try:
        wait(lambda: served() == everyone, START_BOUND, f"all three addresses in {fqdn} A")

        killed_at = time.monotonic()
        for b in pool[VICTIM]:
            bg.run(stop_backend(b))

        def left() -> float:
            return max(0.0, killed_at + DOWN_BOUND - time.monotonic())

        wait(lambda: served() and not stamp_status(router, VICTIM)["healthy"], left(),
             f"/stamps to show {VICTIM} unhealthy")
        wait(lambda: served() == others, left(), f"{ADDRESSES[VICTIM]} to leave {fqdn} A within {DOWN_BOUND:g}s")
        status = stamp_status(router, VICTIM)
        assert status["healthy"] is False and status["healthy_backends"] == 0
        assert all(b["probe"] == "down" and b["last_probe"]["ok"] is False for b in status["backends"])

        for b in pool[VICTIM]:
            bg.run(start_backend(b))          # same port: b.port is kept
        wait(lambda: served() == everyone, UP_BOUND, f"{ADDRESSES[VICTIM]} back in {fqdn} A within {UP_BOUND:g}s")
        assert stamp_status(router, VICTIM)["healthy"] is True
        assert polls > 3
    finally:
        if updater.poll() is None:
            updater.send_signal(signal.SIGTERM)
        try:
            rc = updater.wait(15)
        except subprocess.TimeoutExpired:
            updater.kill()
            updater.wait()
            raise AssertionError(f"the updater did not exit after SIGTERM{logs()}")
    assert rc == 0, f"the updater exited with {rc}{logs()}"

    plans = out_path.read_text()
    assert f"+ create {fqdn} A" in plans, plans
    assert f"- {fqdn} 30 A {ADDRESSES[VICTIM]}" in plans, plans   # the removal, as planned and applied
