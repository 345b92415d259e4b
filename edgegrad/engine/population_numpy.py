"""The population path without numba (``EDGEGRAD_KERNEL=numpy``, or numba missing): numpy, level by level.

Networks with the same number of rows (and row chunk) run together, in chunks of their rows (the kernel's
chunks, ``population_results.row_chunks``): each topological level's nodes of every network at once, forward and then δ
backward, every node's sum over its own edges in plan order (``np.add.reduceat``), every row-wise
sum over one network's own values; so, as on the kernel, a network's bits do not depend on its
neighbours. Slabs hold few enough vertices that a chunk's node-major buffers fit ``slab_budget()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..model.activations import ACTIVATION_NAMES, ACTIVATIONS
from ..model.network import Network
from .memory import slab_budget
from .population_checks import Rows
from .population_pack import Topology, pack
from .population_results import FORWARD, OUTPUTS, SUMS, RowSpan, SlabResults, allocate, redo, row_chunks
from .result import GradientResult

__all__ = ["run"]
#: elements of one gathered edge-product block
EDGE_BLOCK = 1 << 20
#: a group's chunk buffers are kept within this (about an L3 cache: the gathers stay in cache)
GROUP_BYTES = 16 << 20
_LOG_FLOOR = -100.0


def run(nets: list[Network], x: Rows, t: Rows | None, loss: str | None, reduction: str, mode: int,
        dtype: str, norms: bool = False, clip_norm: float | None = None,
        span: RowSpan | None = None) -> list[GradientResult]:
    """Results of every network (``mode`` as in ``population_results``; ``norms``, ``clip_norm`` as for
    ``gradients``; ``span``: these rows are a part of bigger batches, as ``flat_results`` takes it)."""
    kind = np.dtype(dtype)
    batch = x.counts(len(nets))
    found: list[GradientResult | None] = [None] * len(nets)
    failed: list[int] = []
    for members, chunk in _groups(nets, batch, kind):
        group = [nets[p] for p in members]
        packed = pack(group, kind, members)
        top = packed.topology
        res = allocate(mode, batch[members], top.n_out, top.n_edges, top.n_nodes, kind, norms)
        x_rows = _columns(x, members, group, kind)
        t_rows = None if t is None else _columns(t, members, group, np.dtype(np.float64))
        mean_rows = res.batch if span is None else span.total[members]
        _Group(top, packed.in_w, packed.out_w, packed.bias, loss, reduction == "mean", res,
               clip_norm, mean_rows).run(x_rows, t_rows, chunk)
        failed.extend(members[i] for i in np.flatnonzero(res.status).tolist())
        for p, result in zip(members, res.split()):
            found[p] = result
    for p in sorted(failed):       # rare: named (or a norm rescaled) by the network alone, in nets order
        found[p] = redo(nets, p, x, t, loss, reduction == "mean", mode, kind, norms, clip_norm, span)
    return found  # type: ignore[return-value]


def _groups(nets: list[Network], batch: np.ndarray, dtype: np.dtype) -> list[tuple[list[int], int]]:
    """(networks, their row chunk): networks with the same rows and chunk, in groups whose chunk buffers
    (about 6 rows per vertex) fit ``GROUP_BYTES``."""
    sizes = np.array([(n.n_inputs, n.n_nodes, n.output_index.size, n.n_edges) for n in nets],
                     dtype=np.int64).reshape(-1, 4)
    vertices = sizes[:, 0] + sizes[:, 1] + sizes[:, 3] // 4
    chunks = row_chunks(sizes[:, 0], sizes[:, 1], sizes[:, 2])
    groups = []
    for rows, chunk in np.unique(np.stack([batch, chunks], axis=1), axis=0).tolist():
        members = np.flatnonzero((batch == rows) & (chunks == chunk))
        limit = max(1, min(slab_budget(), GROUP_BYTES) // (6 * dtype.itemsize * min(rows, chunk)))
        total = np.cumsum(vertices[members])
        start = 0
        while start < members.size:
            stop = max(start + 1, int(np.searchsorted(total, (total[start - 1] if start else 0) + limit, "right")))
            groups.append((members[start:stop].tolist(), int(chunk)))
            start = stop
    return groups


def _columns(rows: Rows, members: Sequence[int], group: list[Network], dtype: np.dtype) -> np.ndarray:
    """The group's rows, transposed and stacked: each network's columns (inputs or targets) one after another."""
    if rows.each is None:
        shared = np.ascontiguousarray(rows.of(0).T, dtype=dtype)
        return np.tile(shared, (len(group), 1)) if shared.shape[0] else shared
    return np.concatenate([rows.of(p).T for p in members]).astype(dtype, copy=False)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(starts[i], starts[i] + counts[i])``."""
    firsts = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return firsts + np.arange(firsts.size)


def _reduce(values: np.ndarray, counts: np.ndarray, rows: int) -> np.ndarray:
    """Per segment (``counts`` consecutive rows each) the sum of its rows, in order; 0 for empty segments."""
    out = np.zeros((rows, values.shape[1]), dtype=values.dtype)
    has = np.flatnonzero(counts)
    if has.size:
        out[has] = np.add.reduceat(values, np.concatenate([[0], np.cumsum(counts[has])[:-1]]), axis=0)
    return out


class _Group:
    """One group's passes over its packed topology, writing into ``res``."""

    def __init__(self, top: Topology, in_w: np.ndarray, out_w: np.ndarray, bias: np.ndarray, loss: str | None,
                 mean: bool, res: SlabResults, clip_norm: float | None = None,
                 mean_rows: np.ndarray | None = None) -> None:
        self.top, self.in_w, self.out_w, self.bias, self.loss, self.res = top, in_w, out_w, bias, loss, res
        self.clip_norm = clip_norm
        count = top.n_in.size
        counts = top.n_out if loss != "softmax_ce" else np.ones_like(top.n_out)
        #: the loss's mean factor of each network (1 for a sum)
        self.scale = 1.0 / (counts * (res.batch if mean_rows is None else mean_rows)) if mean else np.ones(count)
        self.net_of_row = np.repeat(np.arange(count), top.n_nodes)
        self.vert_of_row = (np.arange(self.net_of_row.size) - top.node_off[self.net_of_row]
                            + top.vert_off[self.net_of_row] + top.n_in[self.net_of_row])
        net_of_vert = np.repeat(np.arange(count), top.n_in + top.n_nodes)
        self.input_verts = np.flatnonzero(np.arange(net_of_vert.size) - top.vert_off[net_of_vert]
                                          < top.n_in[net_of_vert])
        self.in_counts = np.diff(top.in_ptr)
        self.src_vert = top.vert_off[np.repeat(self.net_of_row, self.in_counts)] + top.in_src
        net_of_out_edge = np.repeat(net_of_vert, np.diff(top.out_ptr))
        self.out_counts = np.diff(top.out_ptr)
        self.dst_row = top.node_off[net_of_out_edge] + top.out_dst
        self.net_of_out = np.repeat(np.arange(count), top.n_out)
        self.out_node = top.node_off[self.net_of_out] + top.out_rows
        self.net_of_edge = np.repeat(np.arange(count), top.n_edges)
        self.edge_src = top.vert_off[self.net_of_edge] + top.f_src
        self.edge_dst = top.node_off[self.net_of_edge] + top.f_dst
        self.file_rows = top.node_off[self.net_of_row] + top.node_row
        order = np.argsort(top.row_level, kind="stable")
        bounds = np.flatnonzero(np.diff(top.row_level[order])) + 1
        self.levels = [rows for rows in np.split(order, bounds) if rows.size and top.row_level[rows[0]] >= 0]

    def run(self, x_rows: np.ndarray, t_rows: np.ndarray | None, chunk: int) -> None:
        width = x_rows.shape[1]
        with np.errstate(all="ignore"):
            for r0 in range(0, width, chunk):
                r1 = min(r0 + chunk, width)
                acts, fprime = self._forward(x_rows[:, r0:r1])
                self._write_rows(self.res.outputs, self.res.out_starts, self.top.n_out, acts[self.out_node_vert()],
                                 np.arange(self.net_of_out.size) - self.top.out_off[self.net_of_out],
                                 self.net_of_out, r0)
                if self.res.mode == FORWARD:
                    continue
                if self.res.mode == OUTPUTS:
                    for k in range(int(self.top.n_out.max(initial=0))):
                        direct = np.zeros_like(fprime)
                        has = np.flatnonzero(self.top.n_out > k)
                        direct[self.out_node[self.top.out_off[has] + k]] = 1.0
                        deltas = self._backward(fprime, direct)
                        self._per_example(acts, deltas, r0, k)
                    continue
                direct = np.zeros_like(fprime)
                direct[self.out_node] = self._loss(acts[self.out_node_vert()], t_rows[:, r0:r1])  # type: ignore[index]
                deltas = self._backward(fprime, direct)
                if self.res.norms.size:
                    self._norms(acts, deltas, r0)
                if self.res.mode == SUMS:
                    self._sums(acts, deltas)
                else:
                    self._per_example(acts, deltas, r0, None)
        self._check()

    def out_node_vert(self) -> np.ndarray:
        return self.vert_of_row[self.out_node]

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top, dtype = self.top, self.res.outputs.dtype
        acts = np.zeros((int(top.vert_off[-1]), x.shape[1]), dtype=dtype)
        fprime = np.zeros((self.net_of_row.size, x.shape[1]), dtype=dtype)
        acts[self.input_verts] = x
        slope = self.res.mode != FORWARD
        for rows in self.levels:
            counts = self.in_counts[rows]
            edges = _ranges(top.in_ptr[rows], counts)
            z = _reduce(self.in_w[edges][:, None] * acts[self.src_vert[edges]], counts, rows.size)
            z += self.bias[rows][:, None]
            codes = top.codes[rows]
            for code in np.unique(codes).tolist():
                these = np.flatnonzero(codes == code)
                activation = ACTIVATIONS[ACTIVATION_NAMES[code]]
                zc = np.ascontiguousarray(z[these])
                if slope:
                    o, d = np.empty_like(zc), np.empty_like(zc)
                    activation.fused(zc, o, d)
                    fprime[rows[these]] = d
                else:
                    o = activation.forward(zc)
                acts[self.vert_of_row[rows[these]]] = o
        return acts, fprime

    def _backward(self, fprime: np.ndarray, direct: np.ndarray) -> np.ndarray:
        top = self.top
        deltas = np.zeros_like(fprime)
        for rows in reversed(self.levels):
            verts = self.vert_of_row[rows]
            counts = self.out_counts[verts]
            edges = _ranges(top.out_ptr[verts], counts)
            g = _reduce(self.out_w[edges][:, None] * deltas[self.dst_row[edges]], counts, rows.size)
            g += direct[rows]
            deltas[rows] = fprime[rows] * g
        return deltas

    def _loss(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """∂L/∂y of every output row (in the dtype); each network's loss terms added to ``res.loss``."""
        top, res = self.top, self.res
        y64 = y.astype(np.float64)
        s = self.scale[self.net_of_out][:, None]
        starts = top.out_off[:-1]
        if self.loss == "bce":
            outside = np.add.reduceat(((y64 < 0) | (y64 > 1) | np.isnan(y64)).any(axis=1), starts)
            res.status[outside > 0] = 2
            log_y, dlog_y = _clamped_log(y64)
            log_1y, dlog_1y = _clamped_log(1.0 - y64)
            terms = -(s * (t * log_y + (1.0 - t) * log_1y))
            grad = -s * (t * dlog_y - (1.0 - t) * dlog_1y)
        elif self.loss == "softmax_ce":
            shifted = y64 - np.maximum.reduceat(y64, starts, axis=0)[self.net_of_out]
            e = np.exp(shifted)
            total = np.add.reduceat(e, starts, axis=0)[self.net_of_out]
            t_sum = np.add.reduceat(t, starts, axis=0)[self.net_of_out]
            terms = -((s * t) * (shifted - np.log(total)))
            grad = s * (e / total * t_sum - t)
        else:
            diff = y64 - t
            scaled = diff * np.sqrt(s)
            terms = scaled * scaled
            grad = (2.0 * s) * diff
        res.loss += np.add.reduceat(terms.sum(axis=1), starts)
        return grad.astype(res.outputs.dtype)

    def _sums(self, acts: np.ndarray, deltas: np.ndarray) -> None:
        res = self.res
        step = max(1, EDGE_BLOCK // max(1, acts.shape[1]))
        for a in range(0, self.edge_src.size, step):
            b = min(a + step, self.edge_src.size)
            res.edges[a:b] += (deltas[self.edge_dst[a:b]] * acts[self.edge_src[a:b]]).sum(axis=1)
        res.deltas += deltas[self.file_rows].sum(axis=1)

    def _per_example(self, acts: np.ndarray, deltas: np.ndarray, r0: int, k: int | None) -> None:
        """Rows r0… of the B×E and B×N (``k`` None) or B×K×E and B×K×N (output ``k``) results."""
        top, res = self.top, self.res
        step = max(1, EDGE_BLOCK // max(1, acts.shape[1]))
        keep = None if k is None else top.n_out > k
        for a in range(0, self.edge_src.size, step):
            b = min(a + step, self.edge_src.size)
            nets = self.net_of_edge[a:b]
            chosen = slice(None) if keep is None else np.flatnonzero(keep[nets])
            values = deltas[self.edge_dst[a:b][chosen]] * acts[self.edge_src[a:b][chosen]]
            local = np.arange(a, b)[chosen] - top.edge_off[nets[chosen]]
            self._write_rows(res.edges, res.edge_starts, top.n_edges, values, local, nets[chosen], r0, k)
        rows = np.arange(self.net_of_row.size)
        chosen_rows = rows if keep is None else rows[keep[self.net_of_row]]
        self._write_rows(res.deltas, res.node_starts, top.n_nodes, deltas[self.file_rows[chosen_rows]],
                         chosen_rows - top.node_off[self.net_of_row[chosen_rows]], self.net_of_row[chosen_rows], r0, k)

    def _write_rows(self, flat: np.ndarray, starts: np.ndarray, per_row: np.ndarray, values: np.ndarray,
                    local: np.ndarray, nets: np.ndarray, r0: int, k: int | None = None) -> None:
        """flat[network's start + ((r0 + b)·K + k)·M + local] = values[:, b] (``k`` None: (r0 + b)·M + local)."""
        width = values.shape[1]
        m = per_row[nets][:, None]
        row = (r0 + np.arange(width))[None, :]
        if k is not None:
            row = row * self.top.n_out[nets][:, None] + k
        flat[starts[nets][:, None] + row * m + local[:, None]] = values

    def _norms(self, acts: np.ndarray, deltas: np.ndarray, r0: int) -> None:
        """Each row's gradient norm sqrt(Σ_v δ(v)²·(1 + Σ_{(u,v)} o(u)²)) / scale into ``res.norms`` (as
        ``clipping`` defines it); with ``clip_norm`` each row's δ scaled by min(1, C / norm) in place."""
        top, res = self.top, self.res
        o2 = np.square(acts[self.src_vert], dtype=np.float64)           # every in-edge's source, squared
        fan = _reduce(o2, self.in_counts, self.net_of_row.size) + 1.0
        squares = np.square(deltas, dtype=np.float64) * fan
        norms = np.sqrt(np.add.reduceat(squares, top.node_off[:-1], axis=0)) / self.scale[:, None]   # P × w
        width = deltas.shape[1]
        res.norms[(res.norm_starts[:-1, None] + r0 + np.arange(width)[None, :]).ravel()] = norms.ravel()
        if self.clip_norm is not None:
            with np.errstate(divide="ignore"):
                factors = np.minimum(1.0, self.clip_norm / norms).astype(deltas.dtype)
            np.multiply(deltas, factors[self.net_of_row], out=deltas)

    def _check(self) -> None:
        res = self.res
        for flat, starts in ((res.outputs, res.out_starts), (res.edges, res.edge_starts),
                             (res.deltas, res.node_starts), (res.norms, res.norm_starts)):
            bad = np.flatnonzero(~np.isfinite(flat))
            if bad.size:
                nets = np.searchsorted(starts, bad, side="right") - 1
                res.status[np.unique(nets)] |= 1
        res.status[~np.isfinite(res.loss)] |= 1


def _clamped_log(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln x clamped below at -100, and its derivative (0 where the clamp holds), as ``losses`` computes them."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(x)
    live = log > _LOG_FLOOR
    return np.where(live, log, _LOG_FLOOR), np.where(live, 1.0 / np.where(live, x, 1.0), 0.0)
