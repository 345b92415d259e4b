"""The engine's structure: one place chooses the kernel, both kernels implement ``Kernel``, no import cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from dags import random_network_dict

from edgegrad import Network
from edgegrad.engine import kernel
from edgegrad.engine import plan as plans
from edgegrad.engine.numba_kernel import NumbaKernel

ENGINE = Path(kernel.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    """Engine modules ``path`` imports anywhere (top level, inside functions, ``import_module`` strings,
    ``kernelcache.load`` or ``compiled`` of a numba module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgegrad.engine."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("edgegrad.engine."))
        elif isinstance(node, ast.JoinedStr):
            found.update(re.findall(r"\{__package__\}\.(\w+)", ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("load", "compiled")
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "kernelcache" and node.args
              and isinstance(node.args[0], ast.Constant)):  # kernelcache.load("numba_loops", ...) imports it
            found.add(str(node.args[0].value))
    return {name for name in found if (ENGINE / f"{name}.py").exists() and name != path.stem}


def test_no_import_cycle_within_the_engine() -> None:
    graph = {path.stem: _imports(path) for path in ENGINE.glob("*.py")}
    assert "numba_loops" in graph["numba_kernel"]           # the lazy import is seen
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph[module]):
            assert state.get(other) != 1, "import cycle: " + " -> ".join(trail + [module, other])
            if other not in state:
                visit(other, trail + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("setting", ["numpy", "compiled", "auto"])
def test_choose_kernel_is_the_choice_uses_compiled_reports(setting: str, monkeypatch) -> None:
    monkeypatch.setenv("EDGEGRAD_KERNEL", setting)
    plan = plans.get_plan(Network.from_dict(random_network_dict(2)))
    chosen = kernel.choose_kernel(plan)
    assert isinstance(chosen, NumbaKernel if kernel.uses_compiled(plan) else kernel.NumpyKernel)
    assert chosen.name == ("numba" if setting == "compiled" else "numpy")
    assert chosen.own_edge_order == (chosen.name == "numba")
    for method in ("forward", "backward", "sum_slots", "backward_summed", "file_order", "write_rows"):
        assert callable(getattr(chosen, method))
