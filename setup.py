"""Compiles the data path (the modules router/build.py lists) with Cython 3 where the
installing machine has a C compiler and Python's headers, and installs the same modules
interpreted, with a warning, where it has not (or where Cython is missing, as with
`pip install --no-build-isolation` in an environment without it). The rest of the
package's description is in pyproject.toml.

Cython errors and C errors in the generated code stop the build: a working compiler that
fails is a bug to fix, not an environment to work around.
"""

from __future__ import annotations

import os
import pathlib
import runpy
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
BUILD = runpy.run_path(str(HERE / "router" / "build.py"))
MODULES = BUILD["COMPILED_MODULES"]
if BUILD["undeclared_modules"]():
    sys.exit("stamp-router: a .pxd declares modules that router/build.py's COMPILED_MODULES does not list "
             f"(a compiled module cimporting one would not import): {', '.join(BUILD['undeclared_modules']())}")


def _read_manifest(path: pathlib.Path) -> dict:
    return runpy.run_path(str(path)) if path.exists() else {}


def _warn(message: str) -> None:
    # pip shows a build's output only with -v; the router itself says which build runs
    # (stamp-router --version, the log at start, stamp_router_build_info).
    print(f"WARNING: stamp-router: {message}; the data path is installed interpreted "
          "(pure Python, slower; see README.md, 'The compiled data path')", file=sys.stderr)


class BuildExt(build_ext):
    """build_ext that compiles the listed modules, or none of them."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self._remove_unlisted()
        reason = self._why_not()
        if reason:
            _warn(reason)
            self._remove_previous_build()
            return
        from Cython import __version__ as cython_version
        from Cython.Build import cythonize
        # An editable install compiles in a new temporary directory each time: only the
        # modules whose source changed since the extension beside it was built are
        # compiled again (the manifest says which; a new Cython compiles them all).
        self.extensions = [ext for ext in self.extensions if self._out_of_date(ext.name, cython_version)]
        if self.extensions:
            generated = {ext.name: ext for ext in cythonize(
                self.extensions, build_dir=str(HERE / "build" / "cython"), nthreads=self.parallel or 0, quiet=True,
                compiler_directives={"language_level": 3})}
            for ext in self.extensions:
                ext.sources = generated[ext.name].sources
            super().run()
        self._write_manifest(cython_version)

    def _out_of_date(self, module: str, cython_version: str) -> bool:
        if not self.inplace:
            return True
        recorded = _read_manifest(self._package_dir() / "_compiled.py")
        return (recorded.get("CYTHON") != cython_version or recorded.get("SOURCES", {}).get(module) != BUILD["source_digest"](module)
                or BUILD["extension_path"](module) is None)

    def _why_not(self) -> str | None:
        """Why nothing can be compiled here, or None when a compiler builds against Python.h."""
        try:
            import Cython  # noqa: F401
        except ImportError:
            return "Cython is not installed in the build environment"
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
        compiler = new_compiler(compiler=self.compiler, force=True)
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            probe = pathlib.Path(tmp, "probe.c")
            probe.write_text("#include <Python.h>\nint probe(void) { return Py_IsInitialized(); }\n")
            try:
                compiler.compile([str(probe)], output_dir=tmp, include_dirs=self.include_dirs)
            except Exception as exc:   # the compiler classes' errors differ across setuptools versions
                return f"no working C compiler with Python's headers ({str(exc).strip() or type(exc).__name__})"
        return None

    def _package_dir(self) -> pathlib.Path:
        if self.inplace:
            return pathlib.Path(self.get_finalized_command("build_py").get_package_dir("router"))
        return pathlib.Path(self.build_lib, "router")

    def _remove_previous_build(self) -> None:
        # A build that compiles nothing leaves no extension of an earlier one to be
        # installed (router/build.py would refuse a stale set anyway, with a warning).
        for ext in self.extensions:
            pathlib.Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        (self._package_dir() / "_compiled.py").unlink(missing_ok=True)

    def _remove_unlisted(self) -> None:
        # An editable install keeps the extension of a module taken off the list in the
        # source tree: never loaded (router/build.py warns of it), removed here.
        listed = {pathlib.Path(self.get_ext_fullpath(ext.name)).resolve() for ext in self.extensions}
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        for path in self._package_dir().rglob(f"*{suffix}"):
            if path.resolve() not in listed:
                path.unlink()

    def _write_manifest(self, cython_version: str) -> None:
        sources = {module: BUILD["source_digest"](module) for module in MODULES}
        lines = ["# Written by setup.py: the SHA-256 of each compiled module's source (router/build.py).",
                 f"CYTHON = {cython_version!r}", "SOURCES = {"]
        lines += [f"    {module!r}: {digest!r}," for module, digest in sources.items()]
        lines.append("}")
        (self._package_dir() / "_compiled.py").write_text("\n".join(lines) + "\n")


setup(
    ext_modules=[Extension(module, [str(BUILD["source_path"](module).relative_to(HERE))]) for module in MODULES],
    cmdclass={"build_ext": BuildExt},
)
