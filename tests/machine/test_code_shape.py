"""The machine package stays readable: no function over 80 lines, no class over 40
methods, and no import cycle between its modules (imports under TYPE_CHECKING, which
only type hints see, do not count)."""
from __future__ import annotations

import ast
from pathlib import Path

MACHINE = Path(__file__).resolve().parents[2] / "kprobe_shell" / "machine"
#: Modules whose shape is another area's to fix; checked once they are.
NOT_YET = {"image.py", "dwarf.py"}


def _modules():
    for path in sorted(MACHINE.glob("*.py")):
        yield path, ast.parse(path.read_text())


def _imports_at_run_time(tree: ast.Module) -> set[str]:
    """The sibling modules a module imports when it is loaded or when its functions run."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.level == 1:
                found.update([sub.module.split(".")[0]] if sub.module else [a.name for a in sub.names])
    return {name for name in found if (MACHINE / f"{name}.py").exists()}


def test_no_long_function_and_no_large_class():
    problems = []
    for path, tree in _modules():
        if path.name in NOT_YET:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                problems.append(f"{path.name}:{node.name} is {node.end_lineno - node.lineno + 1} lines")
            if isinstance(node, ast.ClassDef):
                methods = sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) for b in node.body)
                if methods > 40:
                    problems.append(f"{path.name}:{node.name} has {methods} methods")
    assert problems == []


def test_no_import_cycle():
    graph = {path.stem: _imports_at_run_time(tree) for path, tree in _modules() if path.name not in NOT_YET}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            if dep in path:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep in graph:
                visit(dep, path + [dep])

    for module in graph:
        visit(module, [module])
    assert cycles == []
