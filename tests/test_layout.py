"""The package's shape: arrows between modules point one way, so a concept never sits in the wrong room.

Every ``import`` of a genrekit module counts, those inside functions too (they hide a circle, they do not
remove it); only imports under ``if TYPE_CHECKING:`` do not, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import genrekit

PACKAGE = Path(genrekit.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The genrekit modules ``path`` imports when it runs."""
    tree = ast.parse(path.read_text())
    type_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test) for node in ast.walk(branch)}
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return (found & modules) - {name}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtimes_and_engines_never_import_their_callers() -> None:
    graph = _graph()
    callers = {"genrekit.classifier", "genrekit.datasets.prepare", "genrekit.library.run", "genrekit.cli", "genrekit.serve", "genrekit.api"}
    for name, deps in graph.items():
        if name.startswith(("genrekit.runtime", "genrekit.engines", "genrekit.features", "genrekit.models")):
            assert not {d for d in deps if d in callers or d.startswith(("genrekit.cli.", "genrekit.serve."))}, name


def _libraries(path: Path) -> set[str]:
    """The top-level packages ``path`` imports outside genrekit, those inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return found - {"genrekit"}


def test_engines_never_import_a_runtimes_library() -> None:
    """An engine runs whatever runtime the model has: a base install (onnxruntime, no torch) runs on Ray too."""
    for path in (PACKAGE / "engines").glob("*.py"):
        assert not _libraries(path) & {"torch", "onnxruntime"}, path.name
