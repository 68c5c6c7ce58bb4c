"""The shape docs/architecture.md promises: lit_opt never imports Qt, and no two lit_opt
modules import each other, directly or around a circle (imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lit_opt"


def _imports() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name} | {
            t.split(".")[0] for t in targets if t.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "pyqtgraph")}
    return graph


def test_lit_opt_never_imports_qt():
    qt = {name: deps & {"PySide6", "PyQt5", "PyQt6", "pyqtgraph"} for name, deps in _imports().items()}
    assert not {k: v for k, v in qt.items() if v}


def test_no_import_cycles_in_lit_opt():
    graph = _imports()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
