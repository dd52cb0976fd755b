"""Child processes and what the harness reads about them from /proc.

Every process the harness starts goes through `Procs`, which kills them all (whole
process groups, so nginx workers go too) when the run ends, however it ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ToolMissing(RuntimeError):
    pass


def require(tool: str, hint: str) -> str:
    path = shutil.which(tool) or (tool if os.path.exists(tool) else None)
    if path is None:
        raise ToolMissing(f"{tool} not found: {hint}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what or 'process'} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """Prefix a command with taskset when pinning is on (cpus like "1" or "0")."""
    return ["taskset", "-c", cpus, *cmd] if cpus is not None else cmd


class Procs:
    """The harness's children; `close()` ends them all, group by group."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[subprocess.Popen] = []

    def start(self, name: str, cmd: list[str], *, env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.out", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)
        out.close()
        proc.bench_name = name
        self.children.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logdir / f"{name}.out"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        else:
            # The leader is gone; a worker of its group may still be alive.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc in self.children:
            self.children.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.children)):
            self.stop(proc, timeout=5.0)


# -- /proc readings --------------------------------------------------------------------

def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" that ends comm, utime and stime are fields 12 and 13 (0-based 11, 12).
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    user, system = cpu_times(pid)
    return user + system


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    return status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    return status_kib(pid, "VmHWM") / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size: each page shared by n processes counts 1/n in each, so the
    PSS of a supervisor and its forked workers adds up to the memory they use together
    (their RSS would count every shared page once per process)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(x) for x in text.split()]
    except OSError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def only_worker(master: int, timeout: float = 5.0) -> int:
    """The single worker of a master (nginx, the router's supervisor): the process that proxies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children_of(master)
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise RuntimeError(f"process {master} has no worker")


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count(), "usable_cores": cpu_count(),
            "mem_mib": mem, "kernel": os.uname().release}
