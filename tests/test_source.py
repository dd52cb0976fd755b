"""Checks over the router's own source that no test of behaviour would catch in time."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROUTER = pathlib.Path(__file__).resolve().parents[1] / "router"
SOURCES = sorted(ROUTER.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROUTER.parent)))
def test_no_class_defines_a_method_twice(path):
    """A second `def` of a name silently replaces the first: two changes that each added a
    method of the same name (stopping accepts for a drain, and for memory overload) once
    merged into a class where the drain's won and overload never accepted again."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            seen: dict[str, int] = {}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if any(isinstance(d, ast.Name) and d.id == "overload" or
                           isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in item.decorator_list):
                        continue
                    assert item.name not in seen, \
                        f"{path.name}: {node.name}.{item.name} defined at lines {seen[item.name]} and {item.lineno}"
                    seen[item.name] = item.lineno
