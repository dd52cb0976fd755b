"""The systems under test and the backend, each configured for the same routing.

"The same routing" (docs/config.md, docs/operations.md) means, for every system:
  - the tenant comes from X-Tenant-ID, from the first Host label under bench.test, or
    from the `tid` claim of a verified RS256 bearer token;
  - a map (tenant -> stamp) picks the stamp; a tenant not in it gets 404 (every tenant
    the load asks for is pinned, so the router's hash placement never runs);
  - upstream the tenant header is set, X-Forwarded-For/-Proto/-Host and X-Request-ID are
    added; the response carries X-Stamp;
  - keep-alive on both sides (HAProxy `http-reuse always`, nginx `keepalive 64`);
  - one process or thread doing the proxying, no access log.

The router validates the tenant id's alphabet too; HAProxy and nginx here do not (it
would cost them a regex per request), which favours them slightly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from procs import Procs, only_worker, pinned, require, wait_port

from router.config.schema import MOZILLA_INTERMEDIATE

DOMAIN = "bench.test"
STAMPS = ("stamp-a", "stamp-b")
ISSUER = "https://issuer.bench.test/"
AUDIENCE = "bench"
ROOT = Path(__file__).resolve().parent.parent


def tenant_id(i: int) -> str:
    return f"t{i:07d}"


def stamp_of(i: int) -> str:
    return STAMPS[i % len(STAMPS)]


@dataclass
class Table:
    """One pin table written in each system's own format, all from the same pins."""

    count: int
    router_json: Path
    haproxy_map: Path
    nginx_map: Path


def write_table(directory: Path, count: int) -> Table:
    directory.mkdir(parents=True, exist_ok=True)
    router_json = directory / f"tenants-{count}.json"
    haproxy_map = directory / f"tenants-{count}.map"
    nginx_map = directory / f"tenants-{count}.nginx"
    # Written in slabs: a million pins is ~20 MB per file, built without a dict.
    with open(router_json, "w") as rj, open(haproxy_map, "w") as hm, open(nginx_map, "w") as nm:
        rj.write("{")
        step = 50_000
        for start in range(0, count, step):
            ids = range(start, min(count, start + step))
            rj.write(("," if start else "") + ",".join(f'"{tenant_id(i)}":"{stamp_of(i)}"' for i in ids))
            hm.write("".join(f"{tenant_id(i)} {stamp_of(i)}\n" for i in ids))
            nm.write("".join(f"{tenant_id(i)} {stamp_of(i)};\n" for i in ids))
        rj.write("}")
    return Table(count, router_json, haproxy_map, nginx_map)


@dataclass
class JwtMaterial:
    jwks_file: Path          # for the router
    public_pem: Path         # for HAProxy's jwt_verify
    tokens: dict[str, str]   # tenant -> compact token
    source: str              # who made it (jwt_fixture.py or this harness)


@dataclass
class TlsCert:
    """The pair every system serves in the TLS scenarios (tls_material.py)."""

    cert_file: Path
    key_file: Path
    combined_file: Path      # cert then key: HAProxy's crt
    ca_file: Path
    server_name: str


# Every system offers the router's default TLS 1.2 list (Mozilla "intermediate"), TLS
# 1.2 and 1.3 only, ALPN http/1.1; TLS 1.3 suites are OpenSSL's defaults in all three.
TLS_CIPHERS = MOZILLA_INTERMEDIATE


@dataclass
class Routing:
    mode: str                               # header | subdomain | jwt
    table: Table
    backends: dict[str, str]                # stamp -> "127.0.0.1:port"
    jwt: JwtMaterial | None = None
    max_body: bool = False                  # 1 GiB bodies: lift body limits, stream both ways
    jwt_cache: bool = True                  # router only: False verifies every request
    tls: TlsCert | None = None              # clients speak TLS to the system (https://localhost)


# -- the backend ---------------------------------------------------------------------------

def nginx_common(tmp: Path) -> str:
    # Every path nginx would otherwise take from its compiled-in defaults (/var/lib/nginx,
    # /run) points into the run's temp dir, so no root-owned state is touched.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return (f"{user}daemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
            "worker_rlimit_nofile 65536;\n")


def nginx_http_common(tmp: Path) -> str:
    return (f"  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
            f"  fastcgi_temp_path {tmp}/fcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
            # nginx closes a keep-alive connection after 1000 requests by default; wrk
            # would then measure reconnects, which the other systems never make it do.
            "  keepalive_requests 100000000;\n  keepalive_timeout 120s;\n")


class Backend:
    """One nginx process serving every stamp's port with a 2-byte body.

    It echoes the tenant header it received, so the preflight can check each system set it.
    """

    def __init__(self, tmp: Path, ports: dict[str, int]) -> None:
        self.tmp = tmp / "backend"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.ports = ports
        self.proc = None

    def config(self) -> Path:
        servers = "".join(
            f"  server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{\n"
            f"      add_header X-Backend {stamp};\n      add_header X-Seen-Tenant $http_x_tenant_id;\n"
            f"      return 200 \"ok\";\n    }}\n  }}\n"
            for stamp, port in self.ports.items())
        text = (nginx_common(self.tmp) + "worker_processes 1;\nevents { worker_connections 16384; }\n"
                "http {\n" + nginx_http_common(self.tmp) + servers + "}\n")
        path = self.tmp / "nginx.conf"
        path.write_text(text)
        return path

    def start(self, procs: Procs, cpus: str | None) -> None:
        nginx = require("nginx", "apt-get install nginx-light (make bench does this)")
        self.proc = procs.start("backend-nginx", pinned([nginx, "-c", str(self.config()), "-p", str(self.tmp)], cpus))
        for port in self.ports.values():
            wait_port(port, 10, self.proc, "backend nginx")

    @property
    def addresses(self) -> dict[str, str]:
        return {stamp: f"127.0.0.1:{port}" for stamp, port in self.ports.items()}


# -- the systems under test -------------------------------------------------------------

@dataclass
class Running:
    name: str
    port: int
    pid: int                      # the process doing the proxying (nginx: its worker; the router: its first worker)
    proc: subprocess.Popen
    started_s: float = 0.0        # from exec to ready
    extra: dict = field(default_factory=dict)
    # Every process whose CPU time is the proxy's (the router: supervisor and workers).
    pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pids:
            self.pids = [self.pid]


class System:
    name = ""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp / self.name
        self.tmp.mkdir(parents=True, exist_ok=True)

    def available(self) -> str | None:
        """None when it can run here, else why not."""
        return None

    def start(self, procs: Procs, routing: Routing, port: int, cpus: str | None, tag: str) -> Running:
        raise NotImplementedError


class RouterSystem(System):
    """`stamp-router serve`: a supervisor and `workers` worker processes (1 unless a
    scenario says otherwise, so that "one worker each" holds). `code` runs another
    checkout of the router package instead of this one (the workers scenario's
    single-process baseline); None there means the config gets no [process] table."""

    name = "router"
    env: dict[str, str] = {}      # the compiled data path where make built it (README.md)

    def __init__(self, tmp: Path, workers: int | None = 1, code: Path | None = None) -> None:
        super().__init__(tmp)
        self.workers = workers
        self.code = code

    def config(self, routing: Routing, port: int, admin_port: int, tag: str) -> Path:
        sources = {"header": ["header"], "subdomain": ["subdomain"], "jwt": ["jwt"]}[routing.mode]
        listen = ([f'https = "127.0.0.1:{port}"', "[[listen.certificates]]",
                   f'cert_file = "{routing.tls.cert_file}"', f'key_file = "{routing.tls.key_file}"']
                  if routing.tls else [f'http = "127.0.0.1:{port}"'])
        lines = [f'tenants_file = "{routing.table.router_json}"', "",
                 "[listen]", "max_connections = 20000", *listen, "",
                 "[admin]", f'listen = "127.0.0.1:{admin_port}"', "access_log = false", "",
                 "[routing]", f"sources = {json.dumps(sources)}", 'unpinned = "hash"', 'anonymous = "reject"',
                 'tenant_header = "X-Tenant-ID"', 'stamp_header = "X-Stamp"', f'domains = ["{DOMAIN}"]', "",
                 "[upstream]", "max_idle_per_backend = 128", "",
                 # The watcher and state dir are control-plane work, not data path.
                 "[control]", "watch_file = false", f'state_dir = "{self.tmp / ("state-" + tag)}"', ""]
        if self.workers is not None:        # 1: one worker, as HAProxy runs one thread and nginx one worker
            lines += ["[process]", f"workers = {self.workers}", ""]
        if routing.max_body:
            lines += ["[limits]", 'max_body_bytes = "8GiB"', ""]
        if routing.mode == "jwt":
            lines += ["[jwt]", 'claim = "tid"', 'algorithms = ["RS256"]', f'jwks_file = "{routing.jwt.jwks_file}"',
                      f'issuer = "{ISSUER}"', f'audience = "{AUDIENCE}"',
                      *([] if routing.jwt_cache else ["cache_size = 0"]), ""]
        for stamp, address in routing.backends.items():
            lines += ["[[stamps]]", f'name = "{stamp}"', 'region = "bench"', f'backends = ["{address}"]',
                      "health = { enabled = false }", ""]
        path = self.tmp / f"router-{tag}.toml"
        path.write_text("\n".join(lines))
        return path

    def start(self, procs: Procs, routing: Routing, port: int, cpus: str | None, tag: str) -> Running:
        from procs import free_port
        admin_port = free_port()
        cfg = self.config(routing, port, admin_port, tag)
        exe = ROOT / ".venv" / "bin" / "stamp-router"
        cmd = [str(exe)] if exe.exists() and self.code is None else [sys.executable, "-m", "router"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code)
        t0 = time.monotonic()
        proc = procs.start(f"router-{tag}", pinned([*cmd, "serve", "-c", str(cfg)], cpus), env=env,
                           cwd=str(self.code or ROOT))
        deadline = t0 + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"router exited with {proc.returncode}:\n{procs.log_tail(f'router-{tag}')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"router not ready after 120 s:\n{procs.log_tail(f'router-{tag}')}")
            time.sleep(0.1)
        # With taskset in front the Popen pid is taskset's, which then exec()s: same pid.
        workers = worker_pids(admin_port)
        return Running(self.name, port, workers[0] if workers else proc.pid, proc, time.monotonic() - t0,
                       {"admin_port": admin_port, "config": str(cfg)}, pids=[proc.pid, *workers])


def worker_pids(admin_port: int) -> list[int]:
    """The router's serving workers, from /readyz ([] for a router without workers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=5) as r:
            checks = json.loads(r.read())["checks"]
    except OSError as exc:
        if not isinstance(exc, urllib.error.HTTPError):
            raise
        checks = json.loads(exc.read())["checks"]
    workers = checks.get("workers", {}).get("workers", [])
    return [w["pid"] for w in workers if w["state"] == "serving"]


class PureRouterSystem(RouterSystem):
    """The router with its data path interpreted: what an install without a C compiler gets."""

    name = "router-pure"
    env = {"STAMP_ROUTER_PURE": "1"}


class HaproxySystem(System):
    name = "haproxy"

    def __init__(self, tmp: Path, nbthread: int = 1) -> None:
        super().__init__(tmp)
        self.nbthread = nbthread

    def available(self) -> str | None:
        try:
            require("haproxy", "apt-get install haproxy (make bench does this)")
        except Exception as exc:
            return str(exc)
        return None

    def jwt_supported(self) -> bool:
        out = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True).stdout
        # jwt_verify arrived in 2.5 and needs OpenSSL.
        version = out.split()[2] if out.startswith("HAProxy version") else "0"
        major, minor = (int(x) for x in version.split(".")[:2])
        return (major, minor) >= (2, 5) and "+OPENSSL" in out

    def config(self, routing: Routing, port: int, tag: str) -> Path:
        m = routing.table.haproxy_map
        tls = (f" ssl crt {routing.tls.combined_file} alpn http/1.1 ssl-min-ver TLSv1.2 ciphers {TLS_CIPHERS}"
               if routing.tls else "")
        fe = [f"frontend fe\n    bind 127.0.0.1:{port}{tls}\n"]
        if routing.mode == "header":
            fe.append("    http-request set-var(txn.tenant) req.hdr(X-Tenant-ID)\n")
        elif routing.mode == "subdomain":
            # Host without its port, then the first label when the rest is the domain.
            fe.append("    http-request set-var(txn.host) req.hdr(host),lower,field(1,:)\n"
                      f"    http-request set-var(txn.tenant) var(txn.host),field(1,.) if {{ var(txn.host) -m end .{DOMAIN} }}\n")
        else:
            # The same checks the router makes: alg allow-list, signature, iss, aud, exp.
            fe.append(
                "    http-request set-var(txn.bearer) http_auth_bearer\n"
                "    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')\n"
                "    http-request return status 401 content-type application/json string '{\"error\":\"invalid_token\"}' unless { var(txn.alg) -m str RS256 }\n"
                f"    http-request return status 401 content-type application/json string '{{\"error\":\"invalid_token\"}}' unless {{ var(txn.bearer),jwt_verify(RS256,\"{routing.jwt.public_pem}\") -m int 1 }}\n"
                "    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')\n"
                "    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud')\n"
                "    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')\n"
                "    http-request set-var(txn.now) date()\n"
                f"    http-request return status 401 content-type application/json string '{{\"error\":\"invalid_token\"}}' unless {{ var(txn.iss) -m str {ISSUER} }} {{ var(txn.aud) -m str {AUDIENCE} }} {{ var(txn.exp),sub(txn.now) -m int gt 0 }}\n"
                "    http-request set-var(txn.tenant) var(txn.bearer),jwt_payload_query('$.tid')\n")
        fe.append(
            f"    http-request set-var(txn.stamp) var(txn.tenant),map({m})\n"
            "    http-request return status 404 content-type application/json string '{\"error\":\"unknown tenant\"}' unless { var(txn.stamp) -m found }\n"
            "    http-request set-header X-Tenant-ID %[var(txn.tenant)]\n"
            f"    http-request set-header X-Forwarded-Proto {'https' if routing.tls else 'http'}\n"
            "    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
            "    option forwardfor\n"
            "    unique-id-format %{+X}o%pid-%rt\n"
            "    unique-id-header X-Request-ID\n"
            "    use_backend %[var(txn.stamp)]\n")
        backends = "".join(
            f"backend {stamp}\n    http-response set-header X-Stamp {stamp}\n"
            f"    server s1 {address}\n" for stamp, address in routing.backends.items())
        text = (f"global\n    nbthread {self.nbthread}\n    maxconn 4096\n"
                "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
                "    timeout server 60s\n    timeout http-keep-alive 60s\n    timeout http-request 10s\n"
                "    option http-keep-alive\n    http-reuse always\n\n"
                + "".join(fe) + "\n" + backends)
        path = self.tmp / f"haproxy-{tag}-{self.nbthread}t.cfg"
        path.write_text(text)
        return path

    def start(self, procs: Procs, routing: Routing, port: int, cpus: str | None, tag: str) -> Running:
        cfg = self.config(routing, port, tag)
        check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejected {cfg}:\n{check.stdout}{check.stderr}")
        t0 = time.monotonic()
        # -db: foreground, no master process: the one process is the one that proxies.
        proc = procs.start(f"haproxy-{tag}", pinned(["haproxy", "-db", "-f", str(cfg)], cpus))
        wait_port(port, 120, proc, "haproxy")
        return Running(self.name, port, proc.pid, proc, time.monotonic() - t0, {"config": str(cfg)})


class NginxSystem(System):
    name = "nginx"

    def available(self) -> str | None:
        try:
            require("nginx", "apt-get install nginx-light (make bench does this)")
        except Exception as exc:
            return str(exc)
        return None

    def config(self, routing: Routing, port: int, tag: str) -> Path:
        if routing.mode == "jwt":
            raise ValueError("nginx (open source) has no JWT verification: it sits the JWT scenario out")
        tmp = self.tmp / tag
        tmp.mkdir(exist_ok=True)
        if routing.mode == "header":
            tenant = "  map $http_x_tenant_id $tenant { default $http_x_tenant_id; }\n"
        else:
            # $host is lowercased and has the port stripped already.
            escaped = DOMAIN.replace(".", "\\.")
            tenant = f'  map $host $tenant {{ default ""; "~^(?<label>[^.]+)\\.{escaped}$" $label; }}\n'
        size = max(1024, routing.table.count * 2)
        upstreams = "".join(
            f"  upstream {stamp} {{\n    server {address};\n    keepalive 64;\n"
            f"    keepalive_requests 100000000;\n  }}\n" for stamp, address in routing.backends.items())
        tls = ("" if routing.tls is None else
               f" ssl;\n    ssl_certificate {routing.tls.cert_file};\n    ssl_certificate_key {routing.tls.key_file};\n"
               f"    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ciphers {TLS_CIPHERS};\n    ssl_prefer_server_ciphers off")
        body = ("      client_max_body_size 0;\n      proxy_request_buffering off;\n      proxy_buffering off;\n"
                if routing.max_body else "")
        text = (nginx_common(tmp) + "worker_processes 1;\nevents { worker_connections 20000; }\n"
                "http {\n" + nginx_http_common(tmp) +
                f"  map_hash_max_size {size};\n  map_hash_bucket_size 64;\n" + tenant +
                f"  map $tenant $stamp {{\n    default \"\";\n    include {routing.table.nginx_map};\n  }}\n"
                + upstreams +
                f"  server {{\n    listen 127.0.0.1:{port} backlog=4096{tls};\n    location / {{\n"
                "      if ($stamp = \"\") { return 404 '{\"error\":\"unknown tenant\"}'; }\n"
                + body +
                "      proxy_pass http://$stamp;\n      proxy_http_version 1.1;\n"
                "      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n"
                "      proxy_set_header X-Tenant-ID $tenant;\n"
                "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                "      proxy_set_header X-Forwarded-Proto $scheme;\n"
                "      proxy_set_header X-Forwarded-Host $host;\n"
                "      proxy_set_header X-Request-ID $request_id;\n"
                "      add_header X-Stamp $stamp always;\n    }\n  }\n}\n")
        path = tmp / "nginx.conf"
        path.write_text(text)
        return path

    def start(self, procs: Procs, routing: Routing, port: int, cpus: str | None, tag: str) -> Running:
        cfg = self.config(routing, port, tag)
        t0 = time.monotonic()
        proc = procs.start(f"nginx-{tag}", pinned(["nginx", "-c", str(cfg), "-p", str(cfg.parent)], cpus))
        wait_port(port, 120, proc, "nginx")
        return Running(self.name, port, only_worker(proc.pid), proc, time.monotonic() - t0, {"config": str(cfg)})


class FloorSystem(System):
    """benchmarks/floor_proxy.py: the bare uvloop + httptools floor, header routing only."""

    name = "floor"

    def start(self, procs: Procs, routing: Routing, port: int, cpus: str | None, tag: str) -> Running:
        if routing.mode != "header" or routing.max_body:
            raise ValueError("the floor proxy does header routing of small GETs only")
        script = Path(__file__).resolve().parent / "floor_proxy.py"
        backends = [f"{stamp}={address}" for stamp, address in routing.backends.items()]
        t0 = time.monotonic()
        proc = procs.start(f"floor-{tag}", pinned([sys.executable, str(script), str(port),
                                                   str(routing.table.router_json), *backends], cpus))
        wait_port(port, 30, proc, "floor proxy")
        return Running(self.name, port, proc.pid, proc, time.monotonic() - t0)


SYSTEMS = {cls.name: cls for cls in (RouterSystem, PureRouterSystem, HaproxySystem, NginxSystem, FloorSystem)}
