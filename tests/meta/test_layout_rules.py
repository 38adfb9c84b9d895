"""The layout rules docs/architecture.md states, checked over the source with `ast`.

- no function longer than 80 lines (the benchmark script is outside the package);
- no class with more than 40 methods;
- no import cycle between modules of one package, counting every import (at the top or
  inside a function) except those under `if TYPE_CHECKING:`, which never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kprobe_shell"
MAX_FUNCTION_LINES = 80
MAX_METHODS = 40


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path, ast.parse(path.read_text(), str(path)))
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Modules of the project that `name` imports at run time."""
    is_package = MODULES[name][0].name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    stem = base[: len(base) - (child.level - 1)]
                    target = ".".join(stem + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != name}


def _package(name: str) -> str:
    """The top-level package a module belongs to (shell.commands counts as part of shell)."""
    return ".".join(name.split(".")[:2])


def test_no_function_over_80_lines():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name, (_path, tree) in MODULES.items()
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_no_class_over_40_methods():
    big = [f"{name}.{node.name}: {n} methods"
           for name, (_path, tree) in MODULES.items()
           for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
           for n in [sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body)]
           if n > MAX_METHODS]
    assert not big, big


def _cycles() -> list[list[str]]:
    """Strongly connected components (Tarjan) of the import graph within each package."""
    graph = {name: {m for m in _imports(name, tree) if _package(m) == _package(name)
                    and MODULES[m][0].name != "__init__.py"}
             for name, (_path, tree) in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_within_a_package():
    assert _cycles() == []


def test_the_checker_sees_imports_inside_functions_and_skips_type_checking():
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from .image import Image\n"
                     "def f():\n    from .dwarf import x\n")
    MODULES["kprobe_shell.machine._probe"] = (PACKAGE / "machine" / "_probe.py", tree)
    try:
        assert _imports("kprobe_shell.machine._probe", tree) == {"kprobe_shell.machine.dwarf"}
    finally:
        del MODULES["kprobe_shell.machine._probe"]
