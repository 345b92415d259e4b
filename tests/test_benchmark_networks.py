"""The benchmark generators build what their docstrings promise, reproducibly, and the engine on them
agrees with the independent reference (small versions; the benchmarks print the big figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reference import assert_agrees, reference_gradients  # noqa: E402

import edgegrad  # noqa: E402
from benchmarks import networks  # noqa: E402


def test_irregular_dag_shape_and_reproducibility() -> None:
    net = networks.irregular_dag(seed=1, n_inputs=12, n_levels=4, width=30, fan_in=5, n_outputs=3)
    assert (net.n_inputs, net.n_nodes, net.n_outputs) == (12, 4 * 30 + 3, 3)
    assert net.n_edges == (4 * 30 + 3) * 5                                  # fan-in 5 everywhere
    assert np.bincount(net.dst - net.n_inputs, minlength=net.n_nodes).tolist() == [5] * net.n_nodes
    assert int(net.levels.max()) == 5                                       # 4 levels + the outputs
    assert net == networks.irregular_dag(seed=1, n_inputs=12, n_levels=4, width=30, fan_in=5, n_outputs=3)
    assert net != networks.irregular_dag(seed=2, n_inputs=12, n_levels=4, width=30, fan_in=5, n_outputs=3)


def test_the_medium_and_deep_narrow_dags_have_their_promised_sizes() -> None:
    medium = networks.medium_dag()
    assert (medium.n_inputs, medium.n_nodes, medium.n_edges, medium.n_outputs) == (64, 976, 9760, 16)
    deep = networks.deep_narrow_dag(n_levels=40)
    assert (deep.n_inputs, deep.n_nodes, deep.n_outputs) == (8, 40 * 8 + 8, 8)
    assert int(deep.levels.max()) == 41 and deep.n_edges == deep.n_nodes * 4


def test_mlp_is_fully_connected_layer_to_layer() -> None:
    net = networks.mlp(seed=0, sizes=(4, 6, 3))
    assert net.n_edges == 4 * 6 + 6 * 3 and net.n_outputs == 3
    assert len(networks.dense_layers(net)) == 2


def test_the_engine_agrees_with_the_reference_on_the_generators() -> None:
    for net in (networks.tiny(seed=3),
                networks.irregular_dag(seed=4, n_inputs=5, n_levels=3, width=6, fan_in=3, n_outputs=2),
                networks.deep_narrow_dag(seed=8, n_levels=6, width=3),
                networks.mlp(seed=5, sizes=(3, 5, 2))):
        x = np.random.default_rng(6).normal(size=(3, net.n_inputs))
        t = np.random.default_rng(7).normal(size=(3, net.n_outputs))
        data = net.to_dict()
        assert_agrees(edgegrad.gradients(net, x), reference_gradients(data, x))
        assert_agrees(edgegrad.gradients(net, x, targets=t, loss="mse", per_example=True),
                      reference_gradients(data, x, t, "mse", "mean", per_example=True))
