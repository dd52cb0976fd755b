"""`stamp-router serve` as a real subprocess, for integration tests."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import free_port, wait_until


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(doc: dict) -> str:
    """Enough TOML for test configs: top-level scalars, tables, and arrays of tables."""
    lines = []
    for key, value in doc.items():
        if not isinstance(value, (dict, list)) or (isinstance(value, list) and not any(isinstance(v, dict) for v in value)):
            lines.append(f"{key} = {toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for k, v in value.items():
                lines.append(f"{json.dumps(k)} = {toml_value(v)}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"\n[[{key}]]")
                for k, v in item.items():
                    lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


class PortTaken(AssertionError):
    """The router could not bind a port that was free when the test chose it."""


class RouterProcess:
    def __init__(self, tmp_path: Path, doc: dict, *, env: dict | None = None, filename: str = "router.toml",
                 port: int | None = None) -> None:
        self.tmp_path = tmp_path
        self.ports_chosen_here = port is None     # chosen again if another process takes one
        self.doc = doc = dict(doc)
        self._listen_on(port or free_port(), free_port())
        doc.setdefault("control", {})
        doc["control"] = {"state_dir": str(tmp_path / "state"), **doc["control"]}
        # One worker unless a test asks for more: every test still runs the supervisor and
        # a worker process, and a 2-core machine running the suite in parallel is not
        # loaded with a worker per core per router.
        doc["process"] = {"workers": 1, **doc.get("process", {})}
        self.config_path = tmp_path / filename
        self.write_config(doc)
        self.stdout_path = tmp_path / "router.stdout"
        self.stderr_path = tmp_path / "router.stderr"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.args: list[str] = []          # more `serve` arguments (--state-dir)

    def write_config(self, doc: dict) -> None:
        if str(self.config_path).endswith(".json"):
            self.config_path.write_text(json.dumps(doc))
        else:
            self.config_path.write_text(to_toml(doc))

    def start(self, wait_ready: bool = True, timeout: float = 20.0) -> RouterProcess:
        # free_port() only finds a port free a moment ago: any process on the machine may
        # take it before the router binds it (a client's connect picks from the same
        # range). The router then refuses to start; ports chosen here are chosen again.
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "router", "serve", "-c", str(self.config_path), *self.args],
                stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"), env=self.env)
            if not wait_ready:
                return self
            try:
                wait_until(self._ready, timeout, message=f"router ready (stderr: {self.stderr_path})")
                return self
            except PortTaken:
                if not self.ports_chosen_here or attempt == 2:
                    raise
                self._listen_on(free_port(), free_port())
                self.write_config(self.doc)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _listen_on(self, port: int, admin_port: int) -> None:
        self.port, self.admin_port = port, admin_port
        self.doc["listen"] = {**self.doc.get("listen", {}), "http": f"127.0.0.1:{port}"}
        self.doc["admin"] = {**self.doc.get("admin", {}), "listen": f"127.0.0.1:{admin_port}"}

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            error = PortTaken if "Address already in use" in self.stderr() else AssertionError
            raise error(f"router exited with {self.proc.returncode}: {self.stderr()}")
        try:
            status, _, _ = self.admin("GET", "/readyz")
        except OSError:
            return False
        return status == 200

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def admin(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def admin_json(self, path: str):
        status, _, data = self.admin("GET", path)
        assert status == 200, (status, data)
        return json.loads(data)

    def request(self, method: str = "GET", path: str = "/", headers: dict | None = None, body: bytes | None = None,
                timeout: float = 10.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("router did not exit after SIGTERM")

    def metric(self, name: str, **labels) -> float:
        """The value of one sample from /metrics (0 when absent)."""
        _, _, data = self.admin("GET", "/metrics")
        for line in data.decode().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if "{" in head:
                metric, _, rest = head.partition("{")
                got = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if part)
                got = {k: v.strip('"') for k, v in got.items()}
            else:
                metric, got = head, {}
            if metric == name and all(got.get(k) == str(v) for k, v in labels.items()):
                return float(value)
        return 0.0


def stamp(name: str, backends: list[str], region: str = "eu", **extra) -> dict:
    """A stamp table for test configs; health checks off unless a test turns them on."""
    out = {"name": name, "region": region, "backends": backends}
    out.update(extra)
    out.setdefault("health", {"enabled": False})
    return out
