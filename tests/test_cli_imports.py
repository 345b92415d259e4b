"""The command line's modules import each other without a cycle (lazy imports inside functions included),
and its one table of subcommands is what ``edgegrad --help`` lists."""

from __future__ import annotations

import ast
import importlib
import os

import edgegrad.cli
from edgegrad.cli.commands import COMMANDS, build_parser

PACKAGE = "edgegrad.cli"
FOLDER = os.path.dirname(edgegrad.cli.__file__)


def _imports(module: str, path: str) -> set[str]:
    """Every module of PACKAGE that ``module`` imports, at the top or inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.startswith(PACKAGE + ".") and name.count(".") == 2)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"{PACKAGE}.{name[:-3]}": os.path.join(FOLDER, name) for name in os.listdir(FOLDER)
               if name.endswith(".py") and name != "__init__.py"}
    return {module: _imports(module, path) & set(modules) - {module} for module, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_command_line() -> None:
    graph = _graph()
    assert f"{PACKAGE}.common" in graph and graph[f"{PACKAGE}.batch"], "the graph must see the imports"
    assert _cycle(graph) is None


def test_the_shared_helpers_are_a_leaf() -> None:
    graph = _graph()
    assert graph[f"{PACKAGE}.common"] <= {f"{PACKAGE}.io"} and graph[f"{PACKAGE}.io"] == set()


def test_every_command_in_the_table_is_listed_and_has_its_module() -> None:
    listed = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(listed) == list(COMMANDS)
    for name, (module_name, _help) in COMMANDS.items():
        if name in ("up", "server", "worker") and importlib.util.find_spec("grpc") is None:
            continue
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), name
