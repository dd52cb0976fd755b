"""The two builds of the data path (router/build.py, setup.py): which one runs, and why.

The compiled build itself is made by make (pip install -e); these tests copy the package
with its extensions to a temporary directory to edit or remove files without touching the
source tree, and run setup.py with no compiler or no Cython to see the interpreted
install it falls back to.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from router.build import (COMPILED_MODULES, PURE_ENV, ROOT, Build, Reason, current, extension_path,
                          undeclared_modules)
from router.metrics import register_build_info

WHICH = ("import router.build as b, importlib; c = b.choose(); "
         "files = [importlib.import_module(m).__file__ for m in b.COMPILED_MODULES]; "
         "print(c.build.value, c.reason.value, *sorted({f.rpartition('.')[2] for f in files}))")
compiled_here = pytest.mark.skipif(any(extension_path(m) is None for m in COMPILED_MODULES),
                                   reason="no compiled build in this tree (make builds it)")


def which(env: dict | None = None, root: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    """Which build a new interpreter runs from `root`, and the suffixes of the files it loaded."""
    base = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    return subprocess.run([sys.executable, "-W", "always", "-c", WHICH], cwd=root, capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(root), **(env or {})}, timeout=60)


def test_the_build_make_expects_is_the_one_that_runs():
    expected = os.environ.get("STAMP_ROUTER_EXPECT_BUILD")
    if not expected:
        pytest.skip("make test sets STAMP_ROUTER_EXPECT_BUILD")
    choice = current()
    assert choice.build.value == expected, choice
    suffix = ".py" if choice.build is Build.PURE else ".so"
    for module in COMPILED_MODULES:
        assert importlib.import_module(module).__file__.endswith(suffix), module


def test_every_declaration_file_belongs_to_a_compiled_module():
    # A .pxd beside a module that is not compiled: a compiled module cimporting it fails to import.
    assert undeclared_modules() == []


def test_pure_env_loads_every_listed_module_from_its_source():
    run = which({PURE_ENV: "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["pure", "forced", "py"]
    assert "StaleBuildWarning" not in run.stderr


@compiled_here
def test_without_the_env_the_extensions_run():
    for env in ({}, {PURE_ENV: ""}, {PURE_ENV: "0"}):
        run = which(env)
        assert run.stdout.split() == ["compiled", "built", "so"], (env, run.stderr)


@pytest.fixture
def tree(tmp_path):
    """A copy of the package, extensions and manifest included."""
    shutil.copytree(ROOT / "router", tmp_path / "router", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@compiled_here
def test_an_edited_source_runs_every_module_interpreted_with_a_warning(tree):
    assert which(root=tree).stdout.split() == ["compiled", "built", "so"]
    edited = tree / "router" / "proxy" / "http.py"
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    run = which(root=tree)
    # All or none: router/core/decide.py, unchanged, runs interpreted too.
    assert run.stdout.split() == ["pure", "changed", "py"], run.stderr
    assert "StaleBuildWarning" in run.stderr and "router/proxy/http.py" in run.stderr
    assert "router/core/decide.py" not in run.stderr


@compiled_here
def test_a_changed_declaration_file_counts_for_every_module(tree):
    # Any listed module may cimport a .pxd: all of them were compiled against the old one.
    (tree / "router" / "core" / "tenant.pxd").write_text("# declarations added after the build\n")
    run = which(root=tree)
    assert run.stdout.split() == ["pure", "changed", "py"], run.stderr
    assert all(f"{m.replace('.', '/')}.py" in run.stderr for m in COMPILED_MODULES), run.stderr


@compiled_here
def test_a_missing_extension_runs_every_module_interpreted(tree):
    first, *rest = COMPILED_MODULES
    (tree / extension_path(first).relative_to(ROOT)).unlink()
    run = which(root=tree)
    assert run.stdout.split() == ["pure", "incomplete", "py"], run.stderr
    assert "StaleBuildWarning" in run.stderr and f"{first.replace('.', '/')}.py" in run.stderr
    # Nothing compiled at all, as after an install without a compiler: no warning here.
    for module in rest:
        (tree / extension_path(module).relative_to(ROOT)).unlink()
    (tree / "router" / "_compiled.py").unlink()
    run = which(root=tree)
    assert run.stdout.split() == ["pure", "not_built", "py"] and "StaleBuildWarning" not in run.stderr


@compiled_here
def test_an_extension_of_a_module_not_listed_is_never_loaded(tree):
    # As after checking out a branch that compiles fewer modules than the last build did.
    stray = tree / "router" / "core" / f"placement{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    shutil.copy(tree / extension_path(COMPILED_MODULES[0]).relative_to(ROOT), stray)
    run = subprocess.run([sys.executable, "-W", "always", "-c", "import router.core.placement as p; print(p.__file__)"],
                         cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("router/core/placement.py")
    assert "StaleBuildWarning" in run.stderr and "router/core/placement.py" in run.stderr


def _setup(tmp_path: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
    """setup.py build (sources and extensions) into tmp_path/b, as an install would."""
    return subprocess.run([sys.executable, str(ROOT / "setup.py"), "-q", "build", "--build-base", str(tmp_path / "b")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize("case", ["no compiler", "no Cython"])
def test_an_install_without_compiler_or_cython_is_pure_with_a_warning(tmp_path, case):
    if case == "no compiler":
        env = {"CC": "/bin/false"}
    else:
        fake = tmp_path / "fake" / "Cython"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text("raise ImportError('no Cython here')\n")
        env = {"PYTHONPATH": str(tmp_path / "fake")}
    run = _setup(tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert "WARNING: stamp-router:" in run.stderr and "installed interpreted" in run.stderr
    assert ("C compiler" if case == "no compiler" else "Cython is not installed") in run.stderr
    [lib] = (tmp_path / "b").glob("lib*")
    assert not list(lib.rglob("*.so")) and not (lib / "router" / "_compiled.py").exists()
    run = which(root=lib)
    assert run.stdout.split() == ["pure", "not_built", "py"], run.stderr
    assert "StaleBuildWarning" not in run.stderr


def test_the_build_info_metric_says_which_build_runs():
    registry = CollectorRegistry()
    register_build_info(registry)
    choice = current()
    text = generate_latest(registry).decode()
    assert f'build="{choice.build.value}"' in text and f'reason="{choice.reason.value}"' in text
    assert choice.reason in Reason


def test_the_version_line_names_the_build():
    run = subprocess.run([sys.executable, "-m", "router", "--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, PURE_ENV: "1"})
    assert run.stdout.endswith("(pure Python: STAMP_ROUTER_PURE=1)\n"), run.stdout
