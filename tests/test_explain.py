"""``edgegrad.engine.explain``: the numbers it lays out are the engine's, and they add up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from dags import random_inputs, random_network, random_targets

import edgegrad
from edgegrad import InvalidInput, Network
from edgegrad.engine.explain import explain_edge, render

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"\(?(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\)?"


def test_contract_example_by_hand():
    net = Network.load(EXAMPLES / "contract.json")
    ex = explain_edge(net, "x1", "h1", inputs=[[1.0, 2.0]])
    s = ex.sections[0]
    h1 = 1 / (1 + np.exp(-(0.1 + 0.5 * 1.0 - 0.3 * 2.0)))
    assert ex.o_u == 1.0 and ex.z_v == pytest.approx(0.0, abs=1e-15)
    assert ex.fprime_v == pytest.approx(h1 * (1 - h1), rel=1e-14)
    # identity output: δ(y) = 1, δ(h1) = f'(z[h1]) · 1.2 · 1
    assert s.terms["y"].delta == 1.0 and s.terms["y"].direct == 1.0
    assert s.delta_v == pytest.approx(h1 * (1 - h1) * 1.2, rel=1e-14)
    assert s.grad == pytest.approx(h1 * (1 - h1) * 1.2 * 1.0, rel=1e-14)


def check_explanation(net: Network, ex, res_grad) -> None:
    """Every node line adds up; the final product is the engine's edge gradient."""
    for s, grad in zip(ex.sections, res_grad):
        assert s.grad == pytest.approx(grad, rel=1e-12, abs=1e-300)
        assert s.delta_v * ex.o_u == pytest.approx(grad, rel=1e-12, abs=1e-300)
        for term in s.terms.values():
            assert term.fprime * term.inner == pytest.approx(term.delta, rel=1e-9, abs=1e-14)
            for child in term.children:
                if not child.reaches:
                    assert child.delta == 0.0
        if not s.reaches:
            assert s.delta_v == 0.0 and grad == 0.0


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_every_edge_output_mode_matches_engine(seed):
    net = random_network(seed, n_inputs=3, n_nodes=8, n_outputs=2)
    x = random_inputs(seed, 3, net.n_inputs)
    res = edgegrad.gradients(net, x)
    row = 2
    for e, (u, v) in enumerate(net.edge_pairs()):
        ex = explain_edge(net, u, v, inputs=x, row=row)
        assert [s.output for s in ex.sections] == list(net.outputs)
        check_explanation(net, ex, res.edge_grads[row, :, e])
        text = render(ex)
        assert text.count("── P = o[") == net.n_outputs


@pytest.mark.parametrize("loss, reduction", [("mse", "mean"), ("bce", "sum"), ("softmax_ce", "mean")])
def test_every_edge_loss_mode_matches_engine(loss, reduction):
    seed = 5
    out_acts = ("sigmoid",) if loss == "bce" else None
    net = random_network(seed, n_inputs=3, n_nodes=7, n_outputs=2, output_activations=out_acts)
    x = random_inputs(seed, 4, net.n_inputs)
    t = random_targets(seed, loss, 4, net.n_outputs)
    res = edgegrad.gradients(net, x, targets=t, loss=loss, reduction=reduction, per_example=True)
    for e, (u, v) in enumerate(net.edge_pairs()):
        ex = explain_edge(net, u, v, inputs=x, row=1, targets=t, loss=loss, reduction=reduction)
        assert len(ex.sections) == 1 and ex.mode == "loss"
        check_explanation(net, ex, [res.edge_grads[1, e]])
        # in loss mode every output carries a direct term ∂L/∂o
        for y in net.outputs:
            if y in ex.sections[0].terms:
                assert ex.sections[0].terms[y].direct is not None


def parse_blocks(text: str) -> list[tuple[str, float, list[float], float]]:
    """(node, f', numbers inside the parentheses, printed δ) for every expanded δ line."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = re.match(r"\s*δ\((\S+)\) = f_", line)
        if not m:
            continue
        numeric = lines[i + 1].split("= ", 1)[1]
        fprime_text, inner = numeric.split(" · ", 1)
        numbers = [float(n) for n in re.findall(NUMBER, inner)]
        blocks.append((m.group(1), float(fprime_text.strip("()")), numbers,
                       float(lines[i + 2].split("= ", 1)[1])))
    return blocks


@pytest.mark.parametrize("loss", [None, "mse"])
def test_printed_numbers_add_up(loss):
    """Recompute each δ from the printed f', direct term and (w, δ(c)) pairs."""
    net = random_network(17, n_inputs=3, n_nodes=9, n_outputs=2)
    x = random_inputs(17, 2, net.n_inputs)
    t = random_targets(17, "mse", 2, net.n_outputs) if loss else None
    res = edgegrad.gradients(net, x, targets=t, loss=loss, per_example=loss is not None)
    checked = 0
    for e, (u, v) in enumerate(net.edge_pairs()):
        ex = explain_edge(net, u, v, inputs=x, row=0, targets=t, loss=loss)
        text = render(ex, digits=15)
        chunks = text.split("\n── ")[1:]
        assert len(chunks) == len(ex.sections)
        for chunk, section in zip(chunks, ex.sections):
            for node, fprime, numbers, delta in parse_blocks(chunk):
                direct = [numbers.pop(0)] if section.terms[node].direct is not None else []
                assert len(numbers) % 2 == 0
                total = sum(direct) + sum(w * d for w, d in zip(numbers[::2], numbers[1::2]))
                assert fprime * total == pytest.approx(delta, rel=1e-9, abs=1e-12)
                checked += 1
        finals = re.findall(rf"^∂P/∂w\({re.escape(u)},{re.escape(v)}\) = δ\(\S+\) · o\[\S+\] = .* = {NUMBER}$",
                            text, re.M)
        expected = res.edge_grads[0, :, e] if loss is None else [res.edge_grads[0, e]]
        assert [float(f) for f in finals] == pytest.approx(list(expected), rel=1e-12, abs=1e-15)
    assert checked > 10


def test_output_activation_is_visible():
    """Same network, output identity vs sigmoid: the δ(y) factor differs and the text says so."""
    data = Network.load(EXAMPLES / "contract.json").to_dict()
    texts, grads = [], []
    for act in ("identity", "sigmoid"):
        data["nodes"][1]["activation"] = act
        net = Network.from_dict(data)
        ex = explain_edge(net, "x1", "h1", inputs=[[1.0, 2.0]])
        texts.append(render(ex))
        grads.append(ex.sections[0].grad)
    assert grads[0] != grads[1]
    assert "f_y'(z[y]) = 1 (identity)" in texts[0] and "invisible here" in texts[0]
    assert "(sigmoid) multiplies each path's term" in texts[1]
    assert all("depends on the output's activation? yes" in t for t in texts)


def test_dead_node_edge_has_zero_derivative():
    data = {"inputs": ["x"], "outputs": ["y"],
            "nodes": [{"id": "y", "activation": "tanh"}, {"id": "dead", "activation": "sigmoid"}],
            "edges": [{"src": "x", "dst": "y", "weight": 0.5}, {"src": "x", "dst": "dead", "weight": 2.0}]}
    ex = explain_edge(Network.from_dict(data), "x", "dead", inputs=[[0.7]])
    assert not ex.sections[0].reaches and ex.sections[0].grad == 0.0
    assert "dead has no path to y, so δ(dead) = 0" in render(ex)


def test_shared_descendant_expanded_once():
    """A diamond: v -> a -> y and v -> b -> a; a's δ is written out once, then referred to."""
    data = {"inputs": ["x"], "outputs": ["y"],
            "nodes": [{"id": n, "activation": "tanh"} for n in ("v", "b", "a", "y")],
            "edges": [{"src": "x", "dst": "v", "weight": 0.9}, {"src": "v", "dst": "a", "weight": 0.4},
                      {"src": "v", "dst": "b", "weight": -0.7}, {"src": "b", "dst": "a", "weight": 1.1},
                      {"src": "a", "dst": "y", "weight": 0.8}]}
    text = render(explain_edge(Network.from_dict(data), "x", "v", inputs=[[0.3]]))
    assert text.count("δ(a) = f_a'") == 1 and "δ(a) = " in text and "(expanded above)" in text
    short = render(explain_edge(Network.from_dict(data), "x", "v", inputs=[[0.3]]), max_nodes=1)
    assert "(not expanded: --max-nodes 1)" in short


def test_several_outputs_and_output_choice():
    net = random_network(8, n_inputs=2, n_nodes=6, n_outputs=3)
    u, v = net.edge_pairs()[0]
    ex = explain_edge(net, u, v, output=net.outputs[1])
    assert [s.output for s in ex.sections] == [net.outputs[1]]
    assert ex.batch == 1 and set(ex.inputs.values()) == {0.0}  # default: one row of zeros


@pytest.mark.parametrize("kwargs, message", [
    ({"src": "x1", "dst": "nope"}, "--edge: unknown node 'nope'"),
    ({"src": "y", "dst": "h1"}, "--edge: no edge y -> h1 in the network"),
    ({"src": "x1", "dst": "h1", "row": 3}, "--row: 3 out of range (the inputs have 1 rows)"),
    ({"src": "x1", "dst": "h1", "row": -1}, "--row: -1 out of range (the inputs have 1 rows)"),
    ({"src": "x1", "dst": "h1", "output": "h1"}, "--output: 'h1' is not an output (outputs: y)"),
    ({"src": "x1", "dst": "h1", "inputs": [[1.0]]}, "inputs: expected shape (B, 2)"),
    ({"src": "x1", "dst": "h1", "loss": "mse", "targets": [[1.0], [2.0]]}, "targets: has 2 rows but inputs has 1"),
])
def test_bad_requests(kwargs, message):
    net = Network.load(EXAMPLES / "contract.json")
    with pytest.raises(InvalidInput) as info:
        explain_edge(net, kwargs.pop("src"), kwargs.pop("dst"), **{"inputs": [[0.0, 0.0]], **kwargs})
    assert info.value.message.startswith(message)
