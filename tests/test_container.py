"""The Dockerfile and constraints.txt, read as files (no image is built here): the image
keeps its state in its volume, installs the pinned versions, compiles its data path in a
builder stage and runs it without a compiler, and exposes only what listens beyond
loopback by default."""

from __future__ import annotations

import pathlib
import re
import tomllib
from importlib import metadata

from router.config.schema import DEFAULT_HTTP, Admin, Control

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PINS = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), re.M))
# The stages: [(the FROM line, its instructions)].
STAGES = [(m.group(1), m.group(2)) for m in re.finditer(r"^FROM ([^\n]+)\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)]


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


def test_the_build_requirements_are_pinned_and_installed_pinned():
    pins = {_norm(k): v for k, v in PINS.items()}
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    names = {_norm(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requires}
    assert names == {"setuptools", "cython"}
    for name in names:
        assert name in pins, f"build requirement {name} is not pinned in constraints.txt"
        assert metadata.version(name) == pins[name], f"{name}: installed {metadata.version(name)}, pinned {pins[name]}"
    assert re.search(r"BUILD_REQS\s*:= setuptools Cython\n", (REPO / "Makefile").read_text())
    builder = STAGES[0][1]
    assert "pip install -c constraints.txt setuptools Cython" in builder and "--no-build-isolation" in builder


def test_the_image_compiles_in_a_builder_and_runs_on_slim_without_a_compiler():
    (builder_from, builder), (image_from, image) = STAGES
    assert builder_from.endswith(" AS builder") and "gcc" in builder and "pip wheel" in builder
    assert image_from.split()[0] == builder_from.split()[0] and image_from.split()[0].endswith("-slim")
    assert "gcc" not in image and "apt-get" not in image
    # Only the builder's wheels, and the install fails unless the compiled build runs.
    assert "from=builder" in image and "--no-index" in image
    assert "stamp-router --version | grep -q '(compiled: '" in image


def test_the_build_context_is_only_what_the_image_needs():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    copied = {p for line in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M) for p in line.split()}
    for path in copied:
        assert f"!{path.rstrip('/')}" in {line.rstrip("/") for line in ignore}, path
