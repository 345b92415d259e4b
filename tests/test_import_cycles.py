"""No import cycle among edgegrad's hand-written modules, lazy imports (inside functions) included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the folders checked (module name prefix -> folder): every package of the distribution
CHECKED = {"edgegrad": "edgegrad", "edgegrad.server": "server", "edgegrad.worker": "worker",
           "edgegrad.client": "client"}
#: generated code (protoc's), not ours
SKIPPED = ("edgegrad/v1",)
#: cycles allowed on purpose: none
ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in CHECKED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(path.relative_to(ROOT).as_posix().startswith(skip) for skip in SKIPPED):
                continue
            parts = [*path.relative_to(ROOT / folder).with_suffix("").parts]
            name = ".".join([prefix, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The checked modules ``name`` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # ``if TYPE_CHECKING:`` imports never run
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # ``from package import module`` imports that module (the package's __init__ runs first, but a
            # submodule importing its own package's names is how packages are built, not a cycle)
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if any(target.startswith(skip.replace("/", ".")) for skip in SKIPPED):
                continue  # generated code imports nothing of ours
            target = target.replace("server.", "edgegrad.server.", 1) if target.startswith("server.") else target
            target = target.replace("worker.", "edgegrad.worker.", 1) if target.startswith("worker.") else target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _allowed(a: str, b: str) -> bool:
    return any((a.startswith(x) and b.startswith(y)) or (a.startswith(y) and b.startswith(x)) for x, y in ALLOWED)


def test_no_module_imports_itself_back() -> None:
    modules = _modules()
    graph = {name: {m for m in _imports(name, path, modules) if not _allowed(name, m)}
             for name, path in modules.items()}
    assert len(graph) > 30 and sum(map(len, graph.values())) > 30  # it did read the modules and their imports
    cycles = []
    for start in graph:  # a path back to ``start`` from what it imports
        seen, stack = set(), [(m, [start, m]) for m in graph[start]]
        while stack:
            here, path = stack.pop()
            if here == start:
                cycles.append(" -> ".join(path))
                break
            if here not in seen:
                seen.add(here)
                stack += [(m, [*path, m]) for m in graph[here]]
    assert not cycles, cycles
