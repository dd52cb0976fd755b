"""The `stamp-router check` and `route` examples of the README and docs/ print, byte for
byte, what the command prints (stdout, then stderr), and exit as the text says.

Every such example is found in the ```console blocks and run; a config an example names
that is not in the repository is written here, as the text around the example says.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
OFFLINE = ("check", "route")


def _broken() -> str:
    """README: "a copy of the demo with four mistakes"."""
    text = (REPO / "config" / "demo.toml").read_text()
    edits = [('unpinned = "hash"', 'unpined = "hash"'),
             ('backends = ["127.0.0.1:18102"]', 'backends = ["127.0.0.1:0"]'),
             ('failover = ["eu-2"]', 'failover = ["us-1"]'),
             ('globex = "us-1"', 'globex = "us-9"')]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


FILES = {
    "broken.toml": _broken,
    # docs/placement.md: two stamps in two residencies and nothing else.
    "mixed.toml": lambda: ('[[stamps]]\nname = "eu-1"\nregion = "eu"\nbackends = ["127.0.0.1:18101"]\n\n'
                           '[[stamps]]\nname = "us-1"\nregion = "us"\nbackends = ["127.0.0.1:18103"]\n'),
}


def examples():
    found = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for block in re.findall(r"```console\n(.*?)```", text, re.S):
            parts = re.split(r"^\$ ", block, flags=re.M)[1:]
            for part in parts:
                command, _, output = part.partition("\n")
                argv = shlex.split(command)
                if argv[0] == "stamp-router" and argv[1] in OFFLINE and "$(" not in command:
                    found.append(pytest.param(argv[1:], output, id=f"{doc}: {command}"))
    return found


def test_the_docs_have_examples():
    assert len(examples()) >= 8


@pytest.mark.parametrize(("args", "expected"), examples())
def test_example_prints_what_the_docs_say(args, expected, tmp_path):
    (tmp_path / "config").symlink_to(REPO / "config")
    for name, make in FILES.items():
        (tmp_path / name).write_text(make())
    run = subprocess.run([sys.executable, "-m", "router", *args], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert run.stdout + run.stderr == expected
    refused = args[0] == "route" and '"error":' in expected
    assert run.returncode == (1 if args[0] == "check" and not expected.startswith("ok:") else 2 if refused else 0)
