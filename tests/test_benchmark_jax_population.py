"""The padded JAX population baseline (benchmarks/jax_population.py) computes what gradients_many does, so its
timings compare like with like (skipped where jax is not installed: it is a benchmark-only extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
jax = pytest.importorskip("jax", reason="jax not installed (pip install '.[bench]')")

import edgegrad  # noqa: E402
from benchmarks.jax_baseline import _activations  # noqa: E402
from benchmarks.jax_population import edge_and_node_grads, pad, population_step  # noqa: E402
from benchmarks.population_nets import neat_size_population, neat_size_rows  # noqa: E402


def _reversed_order(net: edgegrad.Network) -> edgegrad.Network:
    """The same network with its computed nodes listed in reverse (so file order is not topological order)."""
    n_in, n = net.n_inputs, net.n_nodes
    new = np.concatenate([np.arange(n_in), n_in + (n - 1 - np.arange(n))])   # vertex -> its new index
    order = np.arange(n)[::-1]
    return edgegrad.Network.from_arrays(net.inputs, net.outputs, [net.node_ids[i] for i in order],
                                        [net.activations[i] for i in order], np.asarray(net.biases)[order],
                                        new[net.src], new[net.dst], np.asarray(net.weights))


def test_padded_population_gradients_equal_gradients_many() -> None:
    jax.config.update("jax_enable_x64", True)
    nets = neat_size_population(11, 12)
    nets += [_reversed_order(nets[0]), _reversed_order(nets[1])]
    X, T = neat_size_rows(3, 32)
    names = sorted(_activations())
    d = pad(nets, names)
    losses, grads = population_step(names)(d["W"], d["b"], d["act"], d["order"], d["outs"], X, T)
    want = edgegrad.gradients_many(nets, X, T, loss="mse")
    np.testing.assert_allclose(np.asarray(losses), [r.loss for r in want], rtol=1e-12)
    got = edge_and_node_grads(nets, grads)
    expected = np.concatenate([r.edge_grads for r in want] + [r.deltas for r in want])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
