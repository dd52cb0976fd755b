"""router/core stays sans-IO (style.md rule 1): no event loop, no sockets, no clock.

Checked on the source, not by importing: every router/core module, and every router
module they import at run time, is parsed and its imports are read. Imports under
`if TYPE_CHECKING:` never run and are not counted.
"""

import ast
import pathlib

ROUTER = pathlib.Path(__file__).resolve().parents[2] / "router"
BANNED = {"asyncio", "socket", "aiohttp", "uvloop", "httptools", "time"}


def _runtime_imports(tree: ast.AST):
    """(module name, line) of each import that runs, at any depth."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            # `from router.core import decide` may name a submodule as well as an attribute.
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _source_of(module: str) -> pathlib.Path | None:
    rel = pathlib.Path(*module.split(".")[1:])
    for candidate in (ROUTER / rel.with_suffix(".py"), ROUTER / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_core_imports_no_io():
    todo = sorted(ROUTER.glob("core/*.py"))
    assert todo, "router/core has no modules?"
    seen: set[pathlib.Path] = set()
    offences = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, line in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if module.split(".")[0] in BANNED:
                offences.append(f"{path.relative_to(ROUTER.parent)}:{line} imports {module}")
            elif module.startswith("router."):
                found = _source_of(module)
                if found is not None:
                    todo.append(found)
    assert not offences, "\n".join(offences)
    assert ROUTER / "errors.py" in seen   # the walk followed router imports out of core


def test_the_check_sees_an_offence():
    sample = "import time\nfrom asyncio import sleep\nif TYPE_CHECKING:\n    import socket\n"
    assert [m for m, _ in _runtime_imports(ast.parse(sample))] == ["time", "asyncio", "asyncio.sleep"]
