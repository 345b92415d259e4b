"""Plain numpy BLAS baseline: forward and mse backward through the dense layers of an MLP."""

from __future__ import annotations

import numpy as np

from edgegrad.model.activations import ACTIVATIONS

from .networks import DenseLayer

__all__ = ["mlp_grads", "scatter_to_edges", "targets_in_rows"]


def mlp_grads(layers: list[DenseLayer], X: np.ndarray, T: np.ndarray) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """mse (mean) loss and its (dL/dW, dL/db) for every layer, by hand with matrix products.

    ``T``'s columns are in the last layer's row order (as ``dense_layers`` returns it).
    """
    acts = [X]
    fprimes = []
    for layer in layers:
        z = acts[-1] @ layer.W.T
        z += layer.b
        activation = ACTIVATIONS[layer.activation]
        o = activation.forward(z)
        fprimes.append(activation.derivative(z, o))
        acts.append(o)
    y = acts[-1]
    diff = y - T
    loss = float(np.mean(diff * diff))
    delta = (2.0 / diff.size) * diff * fprimes[-1]
    grads = []
    for k in range(len(layers) - 1, -1, -1):
        grads.append((delta.T @ acts[k], delta.sum(axis=0)))
        if k:
            delta = (delta @ layers[k].W) * fprimes[k - 1]
    return loss, grads[::-1]


def scatter_to_edges(layers: list[DenseLayer], grads: list[tuple[np.ndarray, np.ndarray]],
                     n_edges: int, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer gradients laid out in the network's file order: (edge_grads E, deltas N)."""
    edge_grads = np.empty(n_edges)
    deltas = np.empty(n_nodes)
    for layer, (gW, gb) in zip(layers, grads):
        edge_grads[layer.edge_ids] = gW[layer.edge_rows, layer.edge_cols]
        deltas[layer.nodes] = gb
    return edge_grads, deltas


def targets_in_rows(layers: list[DenseLayer], output_index: np.ndarray, T: np.ndarray) -> np.ndarray:
    """T (B×K, outputs order) with columns permuted into the last layer's row order."""
    row = {int(node): r for r, node in enumerate(layers[-1].nodes)}
    if any(int(n) not in row for n in output_index) or len(row) != len(output_index):
        raise ValueError("the outputs must be exactly the last layer")
    T_rows = np.empty_like(T)
    T_rows[:, [row[int(n)] for n in output_index]] = T
    return T_rows
