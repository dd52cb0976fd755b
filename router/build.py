"""Which build of the data path runs: compiled with Cython, or the same modules interpreted.

COMPILED_MODULES is the one list of the modules setup.py compiles (Cython 3, pure-Python
mode: the `.py` file is the source of both builds). An install compiles them where it finds
a C compiler, Python's headers and Cython, and installs the `.py` files beside the
extensions either way. The interpreted modules run instead of the compiled ones when:

- STAMP_ROUTER_PURE=1 is set (any value but empty or 0): to compare the builds, or to rule
  the compiled one out while chasing a bug;
- the install compiled nothing (no compiler: setup.py warned, `serve` says so at start);
- a compiled module's source changed since it was built. An editable install (make,
  `pip install -e .`) leaves the extensions in the source tree, where Python would load
  them before the edited `.py` and run stale code. The build records each source's
  SHA-256 in router/_compiled.py; on a difference every listed module runs interpreted,
  with a warning naming the changed files, until the next build (`make` rebuilds).
  A changed .pxd counts as a change of every listed module: any of them may cimport it.

All listed modules run compiled or none does: a typed module may use another's compiled
classes, so a mix is never loaded.

The standard library only: setup.py runs this file before anything is installed.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import pathlib
import sys
import warnings
from dataclasses import dataclass

# The per-request modules, compiled when the installing machine can. A module is added
# here once its tests pass against both builds (make test runs them so).
COMPILED_MODULES: tuple[str, ...] = (
    "router.core.decide",
    "router.core.health_view",
    "router.core.snapshot",
    "router.core.sources",
    "router.core.tenant",
    "router.core.decision",
    "router.health.registry",
    "router.metrics",
    "router.process.health",
    "router.state",
    "router.proxy.access_log",
    "router.proxy.batch",
    "router.proxy.context",
    "router.proxy.downstream",
    "router.proxy.ends",
    "router.proxy.exchange",
    "router.proxy.flow",
    "router.proxy.forwarded",
    "router.proxy.framing",
    "router.proxy.head",
    "router.proxy.http",
    "router.proxy.lifecycle",
    "router.proxy.overload",
    "router.proxy.proxy_protocol",
    "router.proxy.response_fields",
    "router.proxy.retry",
    "router.proxy.server",
    "router.proxy.tenant_load",
    "router.proxy.tenant_rate",
    "router.proxy.tls",
    "router.proxy.upstream",
)

PURE_ENV = "STAMP_ROUTER_PURE"
# Written by setup.py beside this file when it compiled the modules (not in git).
MANIFEST = "router._compiled"
# The directory holding the `router` package.
ROOT = pathlib.Path(__file__).resolve().parent.parent


class Build(enum.Enum):
    COMPILED = "compiled"
    PURE = "pure"


class Reason(enum.Enum):
    """Why this build runs."""
    BUILT = "built"              # compiled, from the sources beside it
    FORCED = "forced"            # STAMP_ROUTER_PURE
    NOT_BUILT = "not_built"      # installed without a compiler, headers or Cython
    INCOMPLETE = "incomplete"    # some listed modules have no extension, or none recorded
    CHANGED = "changed"          # a source differs from the one compiled


@dataclass(frozen=True)
class Choice:
    build: Build
    reason: Reason
    detail: str                  # for a person: why, in a few words
    cython: str | None = None    # the Cython version that compiled the extensions
    files: tuple[str, ...] = ()  # the sources not compiled, or changed since

    @property
    def fell_back(self) -> bool:
        """Interpreted without being asked to: worth a warning."""
        return self.build is Build.PURE and self.reason is not Reason.FORCED

    def describe(self) -> str:
        """The words of `stamp-router --version`: `compiled (...)` or `pure Python (...)`."""
        name = "compiled" if self.build is Build.COMPILED else "pure Python"
        return f"{name}: {self.detail}"


class StaleBuildWarning(RuntimeWarning):
    """Compiled modules exist but do not match their sources: the interpreted ones run."""


def source_path(module: str) -> pathlib.Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def source_digest(module: str) -> str:
    """SHA-256 of what a module is compiled from: its .py, and every .pxd of the package.

    Every .pxd, not only its own: a module compiled against another's declarations (a
    cimport) must be compiled again when they change, or it would read the other's
    objects with the old layout.
    """
    digest = hashlib.sha256()
    for path in (source_path(module), *_declarations()):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _declarations() -> list[pathlib.Path]:
    return sorted((ROOT / "router").rglob("*.pxd"))


def undeclared_modules() -> list[str]:
    """Modules with a .pxd beside them that COMPILED_MODULES does not list. A compiled
    module that cimports one would fail to import (its classes would not be the compiled
    types the .pxd declares): setup.py refuses to build."""
    names = (".".join(pxd.relative_to(ROOT).with_suffix("").parts) for pxd in _declarations())
    return [name for name in names if name not in COMPILED_MODULES]


def extension_path(module: str) -> pathlib.Path | None:
    py = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = py.with_name(py.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def _manifest() -> tuple[dict[str, str], str | None]:
    try:
        manifest = importlib.import_module(MANIFEST)
    except ModuleNotFoundError:
        return {}, None
    return dict(manifest.SOURCES), manifest.CYTHON


def _names(modules) -> tuple[str, ...]:
    return tuple(str(source_path(m).relative_to(ROOT)) for m in modules)


def choose(environ=os.environ) -> Choice:
    """Decide which build runs, from the environment and the files beside the sources."""
    if environ.get(PURE_ENV, "") not in ("", "0"):
        return Choice(Build.PURE, Reason.FORCED, f"{PURE_ENV}={environ[PURE_ENV]}")
    built = [m for m in COMPILED_MODULES if extension_path(m) is not None]
    if not built:
        return Choice(Build.PURE, Reason.NOT_BUILT, "installed without a C compiler, Python headers or Cython")
    recorded, cython = _manifest()
    missing = [m for m in COMPILED_MODULES if m not in built or m not in recorded]
    if missing:
        return Choice(Build.PURE, Reason.INCOMPLETE, "some modules not compiled, rebuild", files=_names(missing))
    changed = [m for m in COMPILED_MODULES if recorded[m] != source_digest(m)]
    if changed:
        return Choice(Build.PURE, Reason.CHANGED, "sources changed since compiled, rebuild", files=_names(changed))
    return Choice(Build.COMPILED, Reason.BUILT, f"Cython {cython}", cython)


@functools.cache
def current() -> Choice:
    """The build of this process: decided once, at the first import of a listed module."""
    choice = choose()
    if choice.reason in (Reason.INCOMPLETE, Reason.CHANGED):
        warnings.warn(f"stamp-router runs its data path interpreted ({choice.detail}: make, or pip install): "
                      f"{', '.join(choice.files)}", StaleBuildWarning, stacklevel=2)
    return choice


def unlisted_extensions() -> frozenset[str]:
    """Modules with an extension beside their .py that COMPILED_MODULES does not list:
    left in the source tree by a build of another checkout (a branch that compiled more),
    they are never loaded."""
    found = set()
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for directory, subdirectories, files in os.walk(ROOT / "router"):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
        for name in files:
            suffix = next((s for s in suffixes if name.endswith(s)), None)
            if suffix is None:
                continue
            path = pathlib.Path(directory, name[:-len(suffix)] + ".py")
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if module not in COMPILED_MODULES and path.exists():
                found.add(module)
    return frozenset(found)


class PureFinder:
    """Loads a listed module from its .py when the interpreted build runs, and a module
    with an unlisted extension beside it from its .py always.

    Placed first on sys.meta_path by router/__init__.py. For the compiled build it finds
    nothing, and the regular path finder loads the extension (which it prefers to a .py).
    """

    def __init__(self) -> None:
        self._listed = frozenset(COMPILED_MODULES)
        self._unlisted = unlisted_extensions()
        if self._unlisted:
            warnings.warn("stamp-router ignores extensions of modules it does not compile (make, or pip install, "
                          f"removes them): {', '.join(_names(sorted(self._unlisted)))}", StaleBuildWarning, stacklevel=3)

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname in self._unlisted:
            return self._source_spec(fullname, path)
        if fullname not in self._listed or current().build is Build.COMPILED:
            return None
        return self._source_spec(fullname, path)

    @staticmethod
    def _source_spec(fullname: str, path):
        leaf = fullname.rpartition(".")[2]
        for entry in path or ():
            candidate = os.path.join(entry, leaf + ".py")
            if os.path.isfile(candidate):
                return importlib.util.spec_from_file_location(fullname, candidate)
        return None


def install_finder() -> None:
    if not any(isinstance(finder, PureFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PureFinder())


if __name__ == "__main__":
    # `python router/build.py sources`: the files the compiled build is made from (make
    # rebuilds when one changes).
    if sys.argv[1:] == ["sources"]:
        print(" ".join(_names(COMPILED_MODULES)))
    else:
        print(f"usage: {sys.argv[0]} sources", file=sys.stderr)
        sys.exit(2)
