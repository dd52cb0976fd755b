"""The planning half of the updater stays free of I/O: desired sets, hysteresis, plan and
their values import no network, event loop, clock or SDK, directly or through the router
modules they use. Read from the source, so an import inside a function counts too."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PURE = ["router.dns.model", "router.dns.hysteresis", "router.dns.desired", "router.dns.plan"]
BANNED = ("asyncio", "socket", "aiohttp", "time", "boto3", "botocore", "dns.query", "dns.asyncquery",
          "prometheus_client", "subprocess", "urllib")


def module_file(name: str) -> pathlib.Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def reachable(start: list[str]) -> dict[str, set[str]]:
    """Every router module reachable from `start`, with what each imports."""
    seen: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = imports_of(path)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))   # packages' __init__
        todo.extend(i for i in seen[name] if i.startswith("router."))
    return seen


def test_the_planning_modules_import_no_io():
    found = reachable(PURE)
    assert set(PURE) <= set(found)
    offenders = {(module, imp) for module, imps in found.items() for imp in imps
                 if any(imp == b or imp.startswith(b + ".") for b in BANNED)}
    assert offenders == set()
