"""The population path without numba (``EDGEGRAD_KERNEL=numpy``, or numba missing).

The forward pass (``outputs_many``) runs level by level across all networks with the same number of
rows: each level's nodes of every network at once, each node's weighted sum over its own in-edges in
plan order (``np.add.reduceat``), so a network's outputs never depend on its neighbours. Derivatives
run network by network on the single-network engine (``edgegrad.gradients``): exact and the same
bits as that call, at the cost of a Python loop over the networks.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from ..model.activations import ACTIVATION_NAMES, ACTIVATIONS
from ..model.network import Network
from .population_checks import Rows
from .population_pack import Topology, pack
from .result import GradientResult

__all__ = ["run"]

FORWARD = 0


def run(nets: list[Network], x: Rows, t: Rows | None, loss: str | None, reduction: str, mode: int,
        dtype: str) -> list[GradientResult]:
    """Results of every network (``mode`` as ``population``'s: FORWARD for outputs alone)."""
    if mode == FORWARD:
        return [GradientResult(o, None, np.zeros(0), np.zeros(0)) for o in _outputs(nets, x, np.dtype(dtype))]
    from .. import gradients

    results = []
    for p, net in enumerate(nets):
        try:
            results.append(gradients(net, x.of(p), None if t is None else t.of(p), loss, reduction, mode == 3,
                                     dtype))
        except InvalidInput as exc:
            raise InvalidInput(f"nets[{p}]: {exc}") from None
    return results


def _outputs(nets: list[Network], x: Rows, dtype: np.dtype) -> list[np.ndarray]:
    """Outputs of every network: one level-by-level pass per group of networks with the same rows."""
    batch = np.array([x.of(p).shape[0] for p in range(len(nets))]) if x.each is not None else np.zeros(len(nets))
    found: list[np.ndarray | None] = [None] * len(nets)
    for rows in np.unique(batch).tolist():
        members = np.flatnonzero(batch == rows).tolist()
        group = [nets[p] for p in members]
        packed = pack(group, dtype, 0)
        if x.each is None:
            columns = np.ascontiguousarray(x.shared.T, dtype=dtype)  # type: ignore[union-attr]
            x_rows = columns[np.concatenate([np.arange(n.n_inputs) for n in group])]
        else:
            x_rows = np.concatenate([x.of(p).T for p in members]).astype(dtype)
        outs = _forward(packed.topology, packed.in_w, packed.bias, x_rows, dtype)
        for i, p in enumerate(members):
            found[p] = outs[i]
    for p, o in enumerate(found):
        if o is not None and not np.isfinite(o).all():
            from .. import gradients
            try:
                gradients(nets[p], x.of(p), dtype=dtype.name)
            except InvalidInput as exc:
                raise InvalidInput(f"nets[{p}]: {exc}") from None
            raise InvalidInput(f"nets[{p}]: outputs: a value overflows {dtype.name}")
    return found  # type: ignore[return-value]


def _forward(top: Topology, in_w: np.ndarray, bias: np.ndarray, x_rows: np.ndarray,
             dtype: np.dtype) -> list[np.ndarray]:
    """Every network's B×K outputs; ``x_rows``: the networks' input rows (I_p × B each), one after another."""
    count = top.n_in.size
    width = x_rows.shape[1]
    acts = np.zeros((int(top.vert_off[-1]), width), dtype=dtype)
    net_of_vert = np.repeat(np.arange(count), top.n_in + top.n_nodes)
    local = np.arange(acts.shape[0]) - top.vert_off[net_of_vert]
    acts[np.flatnonzero(local < top.n_in[net_of_vert])] = x_rows
    net_of_row = np.repeat(np.arange(count), top.n_nodes)
    vert_of_row = np.arange(net_of_row.size) - top.node_off[net_of_row] + top.vert_off[net_of_row] + top.n_in[net_of_row]
    in_counts = np.diff(top.in_ptr)
    net_of_in = np.repeat(net_of_row, in_counts)
    src_vert = top.vert_off[net_of_in] + top.in_src
    order = np.argsort(top.row_level, kind="stable")
    levels = top.row_level[order]
    bounds = np.flatnonzero(np.diff(levels)) + 1
    with np.errstate(all="ignore"):
        for rows in np.split(order, bounds):
            if rows.size == 0 or top.row_level[rows[0]] < 0:       # dead nodes: never computed
                continue
            counts = in_counts[rows]
            z = np.zeros((rows.size, width), dtype=dtype)
            has = np.flatnonzero(counts)
            if has.size:
                starts = top.in_ptr[rows[has]]
                firsts = np.repeat(starts - np.concatenate([[0], np.cumsum(counts[has])[:-1]]), counts[has])
                edges = firsts + np.arange(firsts.size)
                products = in_w[edges][:, None] * acts[src_vert[edges]]
                z[has] = np.add.reduceat(products, np.concatenate([[0], np.cumsum(counts[has])[:-1]]), axis=0)
            z += bias[rows][:, None]
            codes = top.codes[rows]
            for code in np.unique(codes).tolist():
                these = np.flatnonzero(codes == code)
                acts[vert_of_row[rows[these]]] = ACTIVATIONS[ACTIVATION_NAMES[code]].forward(
                    np.ascontiguousarray(z[these]))
    net_of_out = np.repeat(np.arange(count), top.n_out)
    out_vert = top.vert_off[net_of_out] + top.n_in[net_of_out] + top.out_rows
    ys = acts[out_vert].T
    return [np.ascontiguousarray(ys[:, a:b]) for a, b in zip(top.out_off[:-1].tolist(), top.out_off[1:].tolist())]
