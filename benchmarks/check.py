"""``engine.py --check``: edgegrad's float64 gradients against PyTorch autograd on small benchmark networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import edgegrad
from edgegrad import Network

from . import networks
from .numpy_baseline import mlp_grads, scatter_to_edges, targets_in_rows

__all__ = ["TOLERANCE", "Comparison", "relative_error", "run_checks"]

#: the contract's bar for float64: agreement with an independent autograd to 1e-9 relative
TOLERANCE = 1e-9


class Comparison(NamedTuple):
    """One field of one case compared with a reference."""

    case: str
    field: str
    error: float
    scale: float

    @property
    def ok(self) -> bool:
        """Within TOLERANCE."""
        return bool(np.isfinite(self.error)) and self.error <= TOLERANCE


def relative_error(value: np.ndarray | float, reference: np.ndarray | float) -> tuple[float, float]:
    """(max |value − reference| / max |reference|, max |reference|); shapes must match exactly."""
    value, reference = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if value.shape != reference.shape:
        return float("inf"), float("nan")
    if reference.size == 0:
        return 0.0, 0.0
    scale = float(np.max(np.abs(reference)))
    diff = float(np.max(np.abs(value - reference)))
    return (diff / scale if scale > 0 else diff), scale


def _cases(seed: int) -> list[tuple[str, Network]]:
    return [
        ("tiny (10 nodes)", networks.tiny(seed)),
        ("irregular small", networks.irregular_dag(seed, n_inputs=32, n_levels=6, width=300, fan_in=10,
                                                   n_outputs=8, shuffle_nodes=True)),
        ("mlp small", networks.mlp(seed, sizes=(32, 64, 64, 32, 8))),
    ]


def _compare(case: str, pairs: dict[str, tuple]) -> list[Comparison]:
    return [Comparison(case, field, *relative_error(v, r)) for field, (v, r) in pairs.items()]


def run_checks(seed: int = 0, batch: int = 16, jacobian_batch: int = 3,
               report: Callable[[Comparison], None] = lambda c: None) -> list[Comparison]:
    """Compare every field, in loss mode (mse, mean) and output mode; ``report`` sees each comparison."""
    from .torch_baseline import LevelModel, LinearModel

    results: list[Comparison] = []

    def add(items: list[Comparison]) -> None:
        for item in items:
            results.append(item)
            report(item)

    for name, net in _cases(seed):
        X, T = networks.batch(net, batch, seed)
        mine = edgegrad.gradients(net, X, targets=T, loss="mse")
        refs = [("torch index_add", LevelModel(net).grads(X, T))]
        if name.startswith("mlp"):
            refs.append(("torch nn.Linear", LinearModel(net).grads(X, T)))
        for ref_name, ref in refs:
            add(_compare(f"{name}, mse loss vs {ref_name}", {
                "outputs": (mine.outputs, ref.outputs), "loss": (mine.loss, ref.loss),
                "edge_grads": (mine.edge_grads, ref.edge_grads), "deltas": (mine.deltas, ref.deltas)}))
        if name.startswith("mlp"):
            layers = networks.dense_layers(net)
            loss, grads = mlp_grads(layers, X, targets_in_rows(layers, net.output_index, T))
            edge_grads, deltas = scatter_to_edges(layers, grads, net.n_edges, net.n_nodes)
            add(_compare(f"{name}, mse loss vs numpy BLAS", {
                "loss": (mine.loss, loss), "edge_grads": (mine.edge_grads, edge_grads),
                "deltas": (mine.deltas, deltas)}))
        if not name.startswith("mlp"):
            Xj = X[:jacobian_batch]
            mine = edgegrad.gradients(net, Xj)
            outputs, edge_grads, deltas = LevelModel(net).jacobian(Xj)
            add(_compare(f"{name}, output mode vs torch autograd.grad", {
                "outputs": (mine.outputs, outputs), "edge_grads": (mine.edge_grads, edge_grads),
                "deltas": (mine.deltas, deltas)}))
    return results
