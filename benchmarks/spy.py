"""py-spy against the router under wrk load, and the profile's top entries.

py-spy samples the running process from outside (no code change, no restart). Its raw
("collapsed") output has one line per distinct stack, `frame;frame;...;leaf COUNT`,
each frame `function (file:line)`. From it the harness ranks:
  - self time by function (where the CPU actually is),
  - time by the innermost router line, C callees included (what to change),
  - inclusive time by function (which call path is expensive).
With --native the C frames are there too (libc's read/write, uvloop, llhttp), so the
share of the kernel's socket work is visible next to the Python that causes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    # The project's venv, then the venv of the interpreter running the harness (run from
    # a worktree with another checkout's venv), then PATH.
    for here in (Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy",
                 Path(sys.executable).parent / "py-spy"):
        if here.exists():
            return str(here)
    return shutil.which("py-spy")


def record(pid: int, seconds: int, out: Path, fmt: str, rate: int = 100, native: bool = False) -> subprocess.Popen:
    exe = py_spy()
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate),
           "--format", fmt, "--output", str(out)]
    # --nonblocking samples without stopping the process (less distortion), but native
    # (C) frames can only be read from a stopped one.
    cmd.append("--native" if native else "--nonblocking")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/router/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return ("router/" if marker == "/router/" else "") + path[i + len(marker):]
    return path


def parse(raw: Path) -> list[tuple[list[tuple[str, str, str]], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for f in stack.split(";"):
            m = FRAME.match(f)
            if m:
                frames.append((m["func"], _short(m["file"]), m["line"] or ""))
            else:
                frames.append((f, "", ""))
        stacks.append((frames, int(count)))
    return stacks


def _idle(frames: list[tuple[str, str, str]]) -> bool:
    # An executor thread parked on its queue: sampled (native mode cannot tell it is
    # idle) but it is not CPU the router spends.
    return any(func in ("PyThread_acquire_lock_timed", "_queue_SimpleQueue_get_impl") for func, _, _ in frames)


def _is_python(frame: tuple[str, str, str]) -> bool:
    return frame[1].endswith(".py")


def top_entries(raw: Path, n: int = 15) -> dict:
    stacks = [(f, c) for f, c in parse(raw) if f and not _idle(f)]
    total = sum(c for _, c in stacks) or 1
    self_fn, py_line, incl = Counter(), Counter(), Counter()
    for frames, count in stacks:
        func, file, line = frames[-1]
        self_fn[f"{func} ({file})"] += count
        # Time in C (a syscall, the parser) is charged to the Python line that called it:
        # that is the line to change.
        loop_at = max((i for i, f in enumerate(frames) if f[0] == "Runner.run"), default=-1)
        for fn, fl, ln in reversed(frames[loop_at + 1:]):
            if _is_python((fn, fl, ln)):
                py_line[f"{fn} ({fl}:{ln})"] += count
                break
        else:
            # No Python frame above the loop: uvloop's own work (epoll, reading sockets).
            py_line["(event loop itself: uvloop, epoll, socket reads)"] += count
        for key in {f"{fn} ({fl})" for fn, fl, _ in frames if _is_python((fn, fl, ""))}:
            incl[key] += count

    def rank(counter: Counter) -> list[dict]:
        return [{"entry": k, "samples": v, "percent": round(100 * v / total, 1)} for k, v in counter.most_common(n)]

    return {"samples": total, "self_by_function": rank(self_fn), "self_by_line": rank(py_line),
            "inclusive_by_function": rank(incl)}
