"""The import graph of ``maspo/`` has no circle: imports flow one way.

Every import counts, at module level or inside a function (a late import still ties the
two modules together); only imports under ``if TYPE_CHECKING:`` (type hints) are left out.
Importing ``maspo.a.b`` also runs ``maspo/a/__init__.py``, so it is an arrow to both
(but for a module inside ``maspo.a``, whose package is already running).
"""

from __future__ import annotations

import ast
from pathlib import Path

import maspo

ROOT = Path(maspo.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["maspo", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return hidden


def import_graph() -> dict[str, set[str]]:
    """module -> the maspo modules it imports (and the packages those run)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}

    def add(source: str, target: str) -> None:
        while target and target != "maspo":
            # a module's own packages are already running when it runs: no arrow to them
            if target in files and not (source + ".").startswith(target + "."):
                graph[source].add(target)
            target = target.rpartition(".")[0]

    for name, path in files.items():
        tree = ast.parse(path.read_text())
        hidden = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if not base.startswith("maspo"):
                    continue
                add(name, base)
                for alias in node.names:  # `from maspo import advantages`: a module
                    if f"{base}.{alias.name}" in files:
                        add(name, f"{base}.{alias.name}")
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "maspo.config" in graph["maspo.cli"] or any(
        "maspo.config" in graph[m] for m in graph if m.startswith("maspo.cli"))
    assert "maspo.losses" in graph["maspo.update"]


def test_the_finder_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_every_data_file_type_has_a_reader():
    from maspo.data.files import READERS
    from maspo.formats import DATA_SUFFIXES

    assert sorted(READERS) == sorted(DATA_SUFFIXES)
