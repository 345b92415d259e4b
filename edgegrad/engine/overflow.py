"""Naming where a computation left the floating-point range, for an InvalidInput message."""

from __future__ import annotations

import numpy as np

from ..model.network import Network
from .passes import PassBuffers
from .plan import Plan
from .result import GradientResult

__all__ = ["overflow_message", "result_overflow_message"]


def overflow_message(net: Network, plan: Plan, buffers: PassBuffers, result: GradientResult, row_offset: int = 0) -> str:
    """Where the first non-finite number came from: a node's value, the loss, a δ, or an edge derivative.

    ``buffers`` and ``result`` are one slab's: rows ``row_offset…`` of the batch, the rows messages name.
    Inputs, weights and biases are finite (they were checked), so a non-finite number means a
    weighted sum, an activation, the loss or a product along a path grew past the dtype's range.
    """
    dtype = plan.dtype.name
    batch = result.outputs.shape[0]
    node_rows = buffers.acts[plan.n_inputs:]
    bad_rows = np.flatnonzero(~np.isfinite(node_rows).all(axis=1))
    if bad_rows.size:  # plan order is topological: the first bad row is where it started
        return _node_message(net, plan, int(bad_rows[0]), node_rows, f"its value overflows {dtype}", batch,
                             row_offset)
    if result.loss is not None and not np.isfinite(result.loss):
        return _loss_message(result.loss)
    delta_rows = buffers.deltas.reshape(plan.n_nodes, -1)
    bad_rows = np.flatnonzero(~np.isfinite(delta_rows).all(axis=1))
    if bad_rows.size:  # the backward pass runs from the last row: the last bad row is where it started
        return _node_message(net, plan, int(bad_rows[-1]), delta_rows, f"its δ overflows {dtype}", batch,
                             row_offset)
    return result_overflow_message(net, plan, result)


def _loss_message(loss: float) -> str:
    return f"loss: {loss} (the loss overflows float64: outputs too far from their targets)"


def result_overflow_message(net: Network, plan: Plan, result: GradientResult) -> str:
    """Where a result whose every slab was finite overflows: the loss, a batch-summed δ, or an edge derivative."""
    dtype = plan.dtype.name
    if result.loss is not None and not np.isfinite(result.loss):
        return _loss_message(result.loss)
    deltas = result.deltas.reshape(-1, net.n_nodes)
    bad_nodes = np.flatnonzero(~np.isfinite(deltas).all(axis=0))
    if bad_nodes.size:  # finite per example, too large once summed over the batch
        node = int(bad_nodes[0])
        return f"nodes[{node}]: its δ summed over the batch overflows {dtype} (node '{net.node_ids[node]}')"
    grads = result.edge_grads.reshape(-1, net.n_edges)
    bad_edges = np.flatnonzero(~np.isfinite(grads).all(axis=0))
    if bad_edges.size:
        edge = int(bad_edges[0])
        ids = net.vertex_ids
        return (f"edges[{edge}]: the derivative for {ids[net.src[edge]]} -> {ids[net.dst[edge]]}"
                f" overflows {dtype} (δ · o too large)")
    return f"result: a value overflows {dtype}"


def _node_message(net: Network, plan: Plan, row: int, values: np.ndarray, what: str, batch: int,
                  row_offset: int) -> str:
    node = int(np.flatnonzero(plan.node_row == row)[0])
    example = row_offset + int(np.flatnonzero(~np.isfinite(values[row]))[0]) % batch  # columns: (output, example)
    return f"nodes[{node}]: {what} at inputs row {example} (node '{net.node_ids[node]}'; weights × inputs too large)"
