"""The Dockerfile and constraints.txt, read as files (no image is built here): the image
keeps its state in its volume, installs the pinned versions, and exposes only what
listens beyond loopback by default."""

from __future__ import annotations

import pathlib
import re
import tomllib
from importlib import metadata

from router.config.schema import DEFAULT_HTTP, Admin, Control

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PINS = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), re.M))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_state_directory_is_the_volume():
    [volume] = re.findall(r'^VOLUME \["([^"]+)"\]', DOCKERFILE, re.M)
    assert f"STAMP_ROUTER_STATE_DIR={volume}" in DOCKERFILE
    assert not Control.model_fields["state_dir"].default.startswith("/")   # relative: not writable in the image


def test_only_what_listens_beyond_loopback_is_exposed():
    exposed = re.findall(r"^EXPOSE (.+)$", DOCKERFILE, re.M)
    # listen.http defaults to DEFAULT_HTTP when no https listener is configured.
    assert exposed == [DEFAULT_HTTP.rsplit(":", 1)[1]]
    assert Admin.model_fields["listen"].default.startswith("127.0.0.1:")


def test_make_and_the_image_install_the_pinned_versions():
    assert "-c constraints.txt" in DOCKERFILE
    assert "-c $(CONSTRAINTS)" in (REPO / "Makefile").read_text()
    pins = {_norm(k): v for k, v in PINS.items()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"] + project["optional-dependencies"]["route53"]
    for requirement in wanted:
        name = _norm(re.match(r"[A-Za-z0-9_.-]+", requirement).group())
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert metadata.version(name) == pins[name], f"{name}: installed {metadata.version(name)}, pinned {pins[name]}"


def test_the_build_context_is_only_what_the_image_needs():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    copied = {p for line in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M) for p in line.split()}
    for path in copied:
        assert f"!{path.rstrip('/')}" in {line.rstrip("/") for line in ignore}, path
