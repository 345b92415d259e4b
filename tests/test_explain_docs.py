"""docs/math.md stays true: its transcripts and numbers are what the engine and the CLI produce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import edgegrad
from edgegrad import Network
from edgegrad.cli.io import dumps_result
from edgegrad.engine.explain import explain_edge, render

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "math.md").read_text(encoding="utf-8")
CONTRACT = Network.load(ROOT / "examples" / "contract.json")


def fenced_after(marker: str) -> str:
    """The first fenced block after ``marker`` in the doc."""
    start = DOC.index(marker)
    m = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(DOC, start)
    assert m is not None
    return m.group(1)


def test_explain_transcript_is_current():
    block = fenced_after("<!-- explain: examples/contract.json --edge x2 h1 --inputs [[1, 2]] -->")
    assert block == render(explain_edge(CONTRACT, "x2", "h1", inputs=[[1.0, 2.0]]))


def test_grad_json_is_current():
    block = fenced_after("--inputs x.json` prints")
    assert block.strip() == dumps_result(CONTRACT, edgegrad.gradients(CONTRACT, [[1.0, 2.0]]))


def sigmoid_output_network() -> Network:
    data = CONTRACT.to_dict()
    data["nodes"][1]["activation"] = "sigmoid"
    return Network.from_dict(data)


def doc_numbers() -> list[float]:
    """Every number the worked example quotes to 10 decimals, taken from the engine."""
    sig = sigmoid_output_network()
    values = edgegrad.engine.api.node_values(sig, [[1.0, 2.0]])
    numbers = [values.o[0, 3], values.fprime[0, 1]]
    numbers += edgegrad.gradients(sig, [[1.0, 2.0]]).edge_grads[0, 0].tolist()
    x, t = [[1.0, 2.0], [0.0, 0.0]], [[1.0], [0.0]]
    batch = edgegrad.engine.api.node_values(CONTRACT, x)
    numbers += [batch.o[1, 2], batch.fprime[1, 0], batch.o[1, 3]]
    per = edgegrad.gradients(CONTRACT, x, targets=t, loss="mse", per_example=True)
    total = edgegrad.gradients(CONTRACT, x, targets=t, loss="mse")
    numbers += [per.loss, per.deltas[1, 0], per.edge_grads[1, 2], total.edge_grads[2]]
    numbers += total.deltas.tolist()
    return numbers


def test_worked_numbers_match_engine():
    numbers = doc_numbers()
    assert len(numbers) == 15
    missing = [f"{v:.10f}" for v in numbers if f"{v:.10f}" not in DOC]
    assert not missing, f"not quoted in docs/math.md: {missing}"


def test_small_numbers_match_engine():
    per = edgegrad.gradients(CONTRACT, [[1.0, 2.0], [0.0, 0.0]], targets=[[1.0], [0.0]], loss="mse",
                             per_example=True)
    assert per.edge_grads[0].tolist() == pytest.approx([0.09, 0.18, 0.15, 0.3], rel=1e-13)
    assert per.deltas[0].tolist() == pytest.approx([0.09, 0.3], rel=1e-13)
    assert "(0.09, 0.18, 0.15, 0.3)" in DOC and "[[0.09, 0.3]," in DOC


def test_clipping_worked_example_matches_engine():
    x, t = [[1.0, 2.0], [0.0, 0.0]], [[1.0], [0.0]]
    own = edgegrad.gradients(CONTRACT, x, targets=t, loss="mse", reduction="sum", per_example=True, norms=True)
    clipped = edgegrad.gradients(CONTRACT, x, targets=t, loss="mse", clip_norm=1.0)
    section = DOC[DOC.index("## 8. Per-example norms"):]
    numbers = [*own.norms, *(1.0 / own.norms), own.deltas[1, 0], own.deltas[1, 1], own.edge_grads[1, 2],
               *clipped.edge_grads, *clipped.deltas]
    missing = [f"{v:.10f}" for v in numbers if f"{v:.10f}" not in section]
    assert not missing, f"not quoted in docs/math.md section 8: {missing}"
    assert own.edge_grads[0].tolist() == pytest.approx([0.18, 0.36, 0.3, 0.6], rel=1e-13)
    assert own.norms[0] ** 2 == pytest.approx(1.0044, rel=1e-13)
    assert "(0.18, 0.36, 0.3, 0.6)" in section and "= 1.0044" in section
