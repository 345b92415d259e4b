"""Population row spans (a population job's row shards): the parts of a batch, folded in order, are its result."""

from __future__ import annotations

import numpy as np
import pytest
from dags import random_inputs, random_network, random_targets

import edgegrad
from edgegrad.engine.population import flat_results
from edgegrad.engine.population_results import RowSpan

CUTS = [0, 100, 256, 300]


def _population(count: int) -> list[edgegrad.Network]:
    return [random_network(300 + i, n_inputs=3, n_nodes=4 + i % 5, n_outputs=2) for i in range(count)]


def _split(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(sizes)[:-1])


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("per_example", [False, True])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_row_parts_fold_into_the_whole_batch(monkeypatch, kernel, reduction, per_example, clip) -> None:
    monkeypatch.setenv("EDGEGRAD_KERNEL", kernel)
    nets = _population(5)
    x, t = random_inputs(1, 300, 3), random_targets(2, "mse", 300, 2)
    kw = dict(loss="mse", reduction=reduction, per_example=per_example, clip_norm=clip)
    whole = edgegrad.gradients_many(nets, x, t, **kw)
    total = np.full(len(nets), 300, dtype=np.int64)
    parts = [flat_results(nets, x[a:b], t[a:b], span=RowSpan(total, a), **kw) for a, b in zip(CUTS[:-1], CUTS[1:])]
    rows = [b - a for a, b in zip(CUTS[:-1], CUTS[1:])]
    for p, want in enumerate(whole):
        e, k = nets[p].n_edges, nets[p].n_outputs
        losses = [part.loss[p] for part in parts]
        assert sum(losses[1:], losses[0]) == pytest.approx(want.loss, rel=1e-12)
        outs = [_split(part.outputs, [r * net.n_outputs for net in nets])[p] for part, r in zip(parts, rows)]
        np.testing.assert_array_equal(np.concatenate(outs).reshape(300, k), want.outputs)
        norms = [_split(part.norms, [r] * len(nets))[p] for part, r in zip(parts, rows)] if clip else []
        if clip:
            np.testing.assert_array_equal(np.concatenate(norms), want.norms)
        if per_example:   # each row is its own: the same bits whatever rows share its call
            grads = [_split(part.edge_grads, [r * net.n_edges for net in nets])[p] for part, r in zip(parts, rows)]
            np.testing.assert_array_equal(np.concatenate(grads).reshape(300, e), want.edge_grads)
        else:             # sums of the parts, in order: within 1e-12 of the whole batch's
            grads = [_split(part.edge_grads, [net.n_edges for net in nets])[p] for part in parts]
            np.testing.assert_allclose(grads[0] + grads[1] + grads[2], want.edge_grads,
                                       rtol=1e-12, atol=1e-12 * np.abs(want.edge_grads).max())


def test_mean_divides_by_the_whole_batch_not_the_part() -> None:
    nets = _population(2)
    x, t = random_inputs(3, 64, 3), random_targets(4, "mse", 64, 2)
    half = flat_results(nets, x[:32], t[:32], loss="mse", span=RowSpan(np.array([64, 64]), 0))
    alone = flat_results(nets, x[:32], t[:32], loss="mse")
    np.testing.assert_allclose(half.edge_grads * 2, alone.edge_grads, rtol=1e-12)
    np.testing.assert_allclose(half.loss * 2, alone.loss, rtol=1e-12)
