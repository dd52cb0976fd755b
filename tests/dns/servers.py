"""Real DNS servers for the tests: BIND 9, Knot and PowerDNS, each on 127.0.0.1 and a free
high port, in its own temporary directory (configs as in /work/shared/dns-servers.md).

Readiness is polled with a deadline (an SOA query, or the API's server list); a server
that does not come up fails the fixture with the end of its log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

ZONE = "example.test."
START_DEADLINE = 15.0

ZONE_FILE = """$ORIGIN example.test.
$TTL 60
@   IN SOA ns1.example.test. hostmaster.example.test. ( 1 60 60 600 60 )
    IN NS  ns1.example.test.
ns1 IN A   127.0.0.1
"""


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.fail(f"{binary} is not installed: run `make system-deps` (Debian packages bind9, knot, pdns-server)")
    return path


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (DNS listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def make_key(directory: str, name: str = "updater-key") -> tuple[str, str]:
    """tsig-keygen output in `directory`; returns (path, secret)."""
    out = subprocess.run([need("tsig-keygen"), "-a", "hmac-sha256", name], check=True,
                         capture_output=True, text=True).stdout
    path = os.path.join(directory, f"{name}.key")
    with open(path, "w") as fh:
        fh.write(out)
    secret = out.split('secret "', 1)[1].split('"', 1)[0]
    return path, secret


@dataclass
class Server:
    kind: str
    port: int
    directory: str
    proc: subprocess.Popen
    log_path: str
    key_file: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def soa_ready(port: int) -> bool:
    try:
        answer = dns.query.udp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=port, timeout=0.5)
    except (dns.exception.DNSException, OSError):
        return False
    return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)


def wait_until(check, what: str, server: Server, deadline: float = START_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            pytest.fail(f"{what} exited with {server.proc.returncode}:\n{server.log_tail()}")
        if check():
            return
        time.sleep(0.05)  # polling interval, not synchronisation: the check decides
    server.stop()
    pytest.fail(f"{what} not ready within {deadline:g}s:\n{server.log_tail()}")


def _spawn(kind: str, directory: str, argv: list[str], port: int) -> Server:
    log_path = os.path.join(directory, f"{kind}.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=directory,
                            start_new_session=True)
    log.close()
    return Server(kind, port, directory, proc, log_path)


BIND_CONF = """include "{key_file}";
options {{
    directory "{directory}";
    pid-file none;
    session-keyfile none;
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-transfer {{ none; }};
    allow-update {{ none; }};
    notify no;
}};
controls {{ }};
zone "example.test" {{
    type primary;
    file "example.test.zone";
    allow-transfer {{ key updater-key; }};
    update-policy {{ grant updater-key zonesub ANY; }};
}};
"""

KNOT_CONF = """server:
    rundir: "{directory}"
    listen: 127.0.0.1@{port}
control:
    listen: knot.sock
log:
  - target: stderr
    any: info
database:
    storage: "{directory}"
key:
  - id: updater-key
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: updater
    key: updater-key
    action: [update, transfer]
zone:
  - domain: example.test
    storage: "{directory}"
    file: example.test.zone
    acl: updater
    zonefile-sync: -1
    journal-content: changes
"""


def _start_primary(kind: str, directory: str, template: str, argv, what: str) -> Server:
    """A primary for example.test. with the zone file, a fresh TSIG key and its config."""
    key_file, secret = make_key(directory)
    with open(os.path.join(directory, "example.test.zone"), "w") as fh:
        fh.write(ZONE_FILE)
    port = free_port()
    conf = os.path.join(directory, f"{kind}.conf")
    with open(conf, "w") as fh:
        fh.write(template.format(directory=directory, port=port, key_file=key_file, secret=secret))
    server = _spawn(kind, directory, argv(conf), port)
    server.key_file = key_file
    wait_until(lambda: soa_ready(port), what, server)
    return server


def start_bind(directory: str) -> Server:
    return _start_primary("bind", directory, BIND_CONF, lambda conf: [need("named"), "-g", "-c", conf, "-n", "1"],
                          "BIND (named)")


def start_knot(directory: str) -> Server:
    return _start_primary("knot", directory, KNOT_CONF, lambda conf: [need("knotd"), "-c", conf], "Knot (knotd)")


def api(method: str, url: str, key: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text.strip() else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def start_powerdns(directory: str) -> Server:
    db = os.path.join(directory, "pdns.sqlite3")
    with open("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql", "rb") as schema:
        subprocess.run([need("sqlite3"), db], stdin=schema, check=True)
    port, api_port = free_port(), free_port()
    api_key = "test-api-key-" + os.urandom(8).hex()
    with open(os.path.join(directory, "api.key"), "w") as fh:
        fh.write(api_key + "\n")
    with open(os.path.join(directory, "pdns.conf"), "w") as fh:
        fh.write(f"""launch=gsqlite3
gsqlite3-database={db}
local-address=127.0.0.1
local-port={port}
daemon=no
guardian=no
disable-syslog=yes
loglevel=4
security-poll-suffix=
api=yes
api-key={api_key}
webserver-address=127.0.0.1
webserver-port={api_port}
webserver-allow-from=127.0.0.0/8
enable-lua-records=yes
dnsupdate=yes
allow-dnsupdate-from=127.0.0.0/8
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
""")
    server = _spawn("powerdns", directory, [need("pdns_server"), f"--config-dir={directory}",
                                            f"--socket-dir={directory}"], port)
    base = f"http://127.0.0.1:{api_port}/api/v1/servers/localhost"

    def api_ready() -> bool:
        try:
            return api("GET", base, api_key)[0] == 200
        except OSError:
            return False

    wait_until(api_ready, "PowerDNS API", server)
    status, body = api("POST", f"{base}/zones", api_key, {
        "name": ZONE, "kind": "Native", "nameservers": ["ns1.example.test."],
        "soa_edit_api": "INCEPTION-INCREMENT"})
    if status != 201:
        server.stop()
        pytest.fail(f"PowerDNS zone creation answered {status}: {body}")
    wait_until(lambda: soa_ready(port), "PowerDNS (pdns_server)", server)
    server.key_file = os.path.join(directory, "api.key")
    server.extra = {"api_url": f"http://127.0.0.1:{api_port}", "api_key": api_key, "base": base}
    return server
