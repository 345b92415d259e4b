"""No import cycle among the service's modules, lazy imports (inside functions) included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the folders checked (module name prefix -> folder); widen as other parts lose their cycles
CHECKED = {"edgegrad.wire": "edgegrad/wire", "edgegrad.jobs": "edgegrad/jobs", "edgegrad.server": "server",
           "edgegrad.worker": "worker", "edgegrad.client": "client"}


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in CHECKED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [*path.relative_to(ROOT / folder).with_suffix("").parts]
            name = ".".join([prefix, *parts[:-1]] + ([] if parts[-1] == "__init__" else [parts[-1]]))
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The checked modules ``name`` imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            target = target.replace("server.", "edgegrad.server.", 1) if target.startswith("server.") else target
            target = target.replace("worker.", "edgegrad.worker.", 1) if target.startswith("worker.") else target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_no_module_imports_itself_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
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
