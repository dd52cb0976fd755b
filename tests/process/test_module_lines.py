"""The process line is the module line: checked on the source's imports, not by running.

router.server starts the processes and wires the parts together; the parts never import
it. The control plane reaches the data path only through its port (router.control.port),
the admin API answers every HTTP route of the router from what it is handed, and no two
modules import each other, however indirectly.
"""

from __future__ import annotations

import ast
import re

from tests.core.test_sans_io import ROUTER, _runtime_imports


def _modules() -> dict[str, object]:
    out = {}
    for path in ROUTER.rglob("*.py"):
        parts = path.relative_to(ROUTER.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _graph() -> dict[str, set[str]]:
    """module -> the router modules its import statements run. Importing a.b.c runs the
    package a.b's __init__ too: that counts as an edge, except towards the importer's own
    packages (a package importing its submodules is how packages are made)."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for module, _ in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if not module.startswith("router"):
                continue
            while module and module not in MODULES:      # `from a.b import name`: a.b
                module = module.rpartition(".")[0]
            while module:
                if module != name and not name.startswith(module + "."):
                    deps.add(module)
                module = module.rpartition(".")[0] if module.count(".") > 1 else ""
        graph[name] = deps
    return graph


GRAPH = _graph()


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports_of(package: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in GRAPH.items() if m == package or m.startswith(package + ".")}


def _circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_the_wiring():
    # A walk that found nothing would pass every test below.
    assert {"router.control", "router.admin.app", "router.process.pool"} <= GRAPH["router.server"]


def test_no_module_imports_itself_through_others():
    assert _circles() == []


# What a user runs: they start a router, so they import the module that starts it.
ENTRY_POINTS = ("router.cli", "router.__main__", "router.demo.run")


def test_nothing_imports_the_module_that_starts_processes():
    importers = sorted(m for m, deps in GRAPH.items() if "router.server" in deps and m not in ENTRY_POINTS)
    assert importers == []


def test_control_reaches_the_data_path_only_through_its_port():
    offences = sorted(f"{m} imports {d}" for m, deps in _imports_of("router.control").items() for d in deps
                      if _package(d) in ("router.proxy", "router.process", "router.server", "router.admin",
                                         "router.state", "router.health", "router.tls", "router.jwt",
                                         "router.metrics"))
    assert offences == []


def test_admin_answers_from_what_it_is_handed():
    offences = sorted(f"{m} imports {d}" for m, deps in _imports_of("router.admin").items() for d in deps
                      if _package(d) in ("router.proxy", "router.process", "router.server", "router.state"))
    assert offences == []


ROUTE = re.compile(r"\.add_(get|put|post|patch|delete|route)\(|web\.Application\(")


def test_every_http_route_of_the_router_is_in_admin():
    # router.dns (the DNS updater's own metrics) and router.demo (a demo stamp) are other
    # programs, not the router.
    outside = sorted(str(p.relative_to(ROUTER.parent)) for name, p in MODULES.items()
                     if ROUTE.search(p.read_text()) and not name.startswith(("router.admin", "router.dns",
                                                                              "router.demo")))
    assert outside == []
