"""Dense levels' summed gradients: written straight into the result, or gathered from scratch, same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dags import random_inputs, random_network_dict
from reference import assert_agrees, reference_gradients

import edgegrad
from edgegrad import Network
from edgegrad.engine import plan as plans
from edgegrad.engine.api import node_values
from edgegrad.model.activations import ACTIVATIONS

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels


def _layers(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [5, 7, 6, 3]
    weights = [rng.standard_normal((b, a)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal(b) * 0.1 for b in sizes[1:]]
    return Network.from_layers(weights, biases, ["tanh", "sigmoid", "identity"])


def _shuffled(data: dict[str, Any], seed: int) -> dict[str, Any]:
    edges = data["edges"]
    order = np.random.default_rng(seed).permutation(len(edges))
    return {**data, "edges": [edges[i] for i in order]}


def _skip_first(data: dict[str, Any]) -> dict[str, Any]:
    """An input → output skip edge at the front of the file: the last level's block is no longer full."""
    skip = {"src": data["inputs"][0], "dst": data["outputs"][0], "weight": 0.7}
    return {**data, "edges": [skip, *data["edges"]]}


@pytest.mark.parametrize("layout, direct", [("layers", [True, True, True]), ("shuffled", [False] * 3),
                                            ("skip edge first", [True, True, False])])
@pytest.mark.parametrize("seed", range(3))
def test_dense_gradients_agree_with_the_reference(layout: str, direct: list[bool], seed: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every dense level by BLAS, in each file layout: the same gradients as the scalar reference."""
    monkeypatch.setattr(plans, "DENSE_GRAD_MIN_EDGES", 0)
    plans.clear_plan_cache()
    try:
        data = _layers(seed).to_dict()
        data = {"layers": data, "shuffled": _shuffled(data, seed), "skip edge first": _skip_first(data)}[layout]
        net = Network.from_dict(data)
        compiled = plans.get_plan(net)
        assert [g.direct for g in compiled.dense.levels] == direct
        assert all(level.dense_grad is not None for level in compiled.levels)
        gathered = {"layers": 0, "shuffled": net.n_edges, "skip edge first": 19}[layout]
        assert compiled.dense.files.size == gathered
        assert (compiled.dense.span is None) == (layout != "shuffled")    # else the gather fills a whole range
        rng = np.random.default_rng(seed)
        X, T = rng.standard_normal((4, net.n_inputs)), rng.standard_normal((4, net.n_outputs))
        got = edgegrad.gradients(net, X, targets=T, loss="mse")
        want = reference_gradients(data, X, T, "mse", "mean", per_example=True)
        np.testing.assert_allclose(got.edge_grads, want.edge_grads.sum(axis=0), rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(got.deltas, want.deltas.sum(axis=0), rtol=1e-9, atol=1e-15)
    finally:
        plans.clear_plan_cache()


def test_a_layered_network_needs_no_scratch() -> None:
    """``from_layers`` writes each layer row-major: the BLAS products land in the result itself."""
    rng = np.random.default_rng(0)
    net = Network.from_layers([rng.standard_normal((80, 64)), rng.standard_normal((70, 80))])
    dense = plans.get_plan(net).dense
    assert [g.direct for g in dense.levels] == [True, True] and dense.scratch_cells == 0


@pytest.mark.parametrize("narrow_nodes", [0, 1000])
@pytest.mark.parametrize("seed", range(4))
def test_narrow_and_wide_levels_agree_with_the_reference(narrow_nodes: int, seed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Levels computed with f and f' fused, or with f first and every f' after the pass: same results."""
    monkeypatch.setattr(plans, "NARROW_NODES", narrow_nodes)
    plans.clear_plan_cache()
    try:
        data = random_network_dict(seed, n_inputs=4, n_nodes=14, n_outputs=3)
        net = Network.from_dict(data)
        assert all(level.narrow == (narrow_nodes > 0) for level in plans.get_plan(net).levels)
        X = random_inputs(seed, 3, net.n_inputs)
        T = np.random.default_rng(seed).uniform(size=(3, net.n_outputs))
        assert_agrees(edgegrad.gradients(net, X), reference_gradients(data, X))
        assert_agrees(edgegrad.gradients(net, X, targets=T, loss="mse", per_example=True),
                      reference_gradients(data, X, T, "mse", "mean", per_example=True))
        values = node_values(net, X)                 # every node, dead ones too, and f'(z) of each
        np.testing.assert_allclose(values.o[:, net.n_inputs + net.output_index], reference_gradients(data, X).outputs,
                                   rtol=1e-9, atol=1e-12)
        for j, name in enumerate(net.activations):
            activation = ACTIVATIONS[name]
            np.testing.assert_allclose(values.fprime[:, j], activation.derivative(values.z[:, j], values.o[:, net.n_inputs + j]),
                                       rtol=1e-9, atol=1e-12)
    finally:
        plans.clear_plan_cache()


@pytest.mark.parametrize("layout, scatters", [("shuffled", True), ("skip edge first", False), ("a cell of no edge", False)])
def test_the_compiled_scatter_puts_dense_blocks_in_file_order_bit_for_bit(layout: str, scatters: bool,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Where every scratch cell is one edge of one run of the file, numba's scatter moves the dense blocks into
    file order (plain and clipped sums): the same bits as numpy's gather; elsewhere the gather runs."""
    from edgegrad.engine import kernel, numba_kernel

    monkeypatch.setattr(plans, "DENSE_GRAD_MIN_EDGES", 0)
    plans.clear_plan_cache()
    try:
        data = _layers(4).to_dict()
        data = {"shuffled": _shuffled(data, 4), "skip edge first": _skip_first(data),
                "a cell of no edge": _shuffled({**data, "edges": data["edges"][1:]}, 4)}[layout]
        net = Network.from_dict(data)
        dense = plans.get_plan(net).dense
        assert dense.files.size and (dense.put.size == dense.scratch_cells) == scatters
        loops = numba_kernel.loops()
        real, seen = loops.put_cells, []
        monkeypatch.setattr(loops, "put_cells", lambda *a: (seen.append(a[1] - a[0]), real(*a)))
        rng = np.random.default_rng(4)
        X, T = rng.standard_normal((6, net.n_inputs)), rng.standard_normal((6, net.n_outputs))

        def both() -> list[edgegrad.GradientResult]:
            return [edgegrad.gradients(net, X, targets=T, loss="mse"),
                    edgegrad.gradients(net, X, targets=T, loss="mse", clip_norm=0.05)]

        assert kernel._NUMPY["numpy"].scatter_min_bytes == float("inf")          # never under the numpy setting
        assert kernel._NUMPY["auto"].scatter_min_bytes == kernel.COMPILED_SCATTER_MIN_BYTES
        monkeypatch.setenv("EDGEGRAD_KERNEL", "numpy")
        gathered = both()
        assert not seen
        monkeypatch.setenv("EDGEGRAD_KERNEL", "auto")
        monkeypatch.setitem(kernel._NUMPY, "auto", kernel.NumpyKernel(kernel.COMPILED_WRITE_MIN_BYTES, 0))
        scattered = both()
        assert seen == ([dense.scratch_cells] * 2 if scatters else [])
        for a, b in zip(gathered, scattered):
            assert a == b
        want = reference_gradients(data, X, T, "mse", "mean", per_example=True)
        np.testing.assert_allclose(scattered[0].edge_grads, want.edge_grads.sum(axis=0), rtol=1e-9, atol=1e-15)
    finally:
        plans.clear_plan_cache()
