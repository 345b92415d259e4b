"""A population slab's result arrays: one flat array per field for all its networks, split into per-network views.

Both population paths (the numba kernel and numpy) write every network's outputs, derivatives and
loss into these arrays at its own offsets, and flag a network whose results are not finite in
``status``; ``raise_for`` names that network with its own ``gradients`` message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from ..model.population import PopulationColumns
from .population_checks import Rows
from .result import GradientResult

__all__ = ["FORWARD", "OUTPUTS", "SUMS", "EXAMPLES", "ROW_CHUNK", "CHUNK_BYTES", "row_chunks", "SlabResults",
           "allocate", "redo", "FlatResults", "RowSpan"]

#: the modes: outputs alone, output mode (B×K×E), loss-mode sums, loss mode per example
FORWARD, OUTPUTS, SUMS, EXAMPLES = 0, 1, 2, 3
#: rows of one network taken at a time by both paths (the same for every network and dtype: chunk
#: boundaries, and so the order of every sum over rows, never depend on the neighbours)
ROW_CHUNK = 256
#: a big network takes fewer rows at a time: its chunk's buffers stay within this
CHUNK_BYTES = 32 << 20


class RowSpan(NamedTuple):
    """The rows of a call as a part of bigger batches (a population job's row shard): ``total`` (P,) int64, the rows
    of each network's whole batch (what ``reduction="mean"`` divides by), ``offset``: the first of these rows."""

    total: np.ndarray
    offset: int


def row_chunks(n_in: np.ndarray, n_nodes: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """Rows each network takes at a time: ``ROW_CHUNK``, fewer where its chunk buffers (activations, f'(z), δ,
    ∂L/∂y: about I + 3·N + 3·K + 6 rows of 8 bytes) would pass ``CHUNK_BYTES``. A network's own sizes
    decide it, never its neighbours (nor the dtype)."""
    per_row = (n_in + 3 * n_nodes + 3 * n_out + 6) * 8
    return np.clip(CHUNK_BYTES // per_row, 1, ROW_CHUNK).astype(np.int64)


def _starts(sizes: np.ndarray) -> np.ndarray:
    out = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


@dataclass
class SlabResults:
    """Flat result arrays of a slab's networks and where each network's part starts."""

    mode: int
    batch: np.ndarray          #: (P,) rows of each network
    k: np.ndarray              #: (P,) outputs
    e: np.ndarray              #: (P,) edges
    n: np.ndarray              #: (P,) nodes
    outputs: np.ndarray        #: Σ B·K
    out_starts: np.ndarray
    edges: np.ndarray          #: Σ B·K·E (output mode), Σ E (sums), Σ B·E (per example)
    edge_starts: np.ndarray
    deltas: np.ndarray         #: likewise with N
    node_starts: np.ndarray
    loss: np.ndarray           #: (P,) float64
    status: np.ndarray         #: (P,) int8: 0 fine, 1 not finite, 2 bce outputs outside [0, 1]
    norms: np.ndarray          #: Σ B per-example gradient norms (empty unless asked for)
    norm_starts: np.ndarray

    def split(self) -> list[GradientResult]:
        """Each network's GradientResult: views of the flat arrays, shaped as ``gradients`` shapes them."""
        outs, edges, deltas = (_pieces(a, s) for a, s in ((self.outputs, self.out_starts),
                                                             (self.edges, self.edge_starts),
                                                             (self.deltas, self.node_starts)))
        shapes = list(zip(self.batch.tolist(), self.k.tolist(), self.e.tolist(), self.n.tolist()))
        norms = _pieces(self.norms, self.norm_starts) if self.norms.size else [None] * len(shapes)
        if self.mode == FORWARD:
            return [GradientResult(o.reshape(b, k), None, ge, gd) for o, ge, gd, (b, k, _, _)
                    in zip(outs, edges, deltas, shapes)]
        if self.mode == OUTPUTS:
            return [GradientResult(o.reshape(b, k), None, ge.reshape(b, k, e), gd.reshape(b, k, n))
                    for o, ge, gd, (b, k, e, n) in zip(outs, edges, deltas, shapes)]
        losses = self.loss.tolist()
        if self.mode == SUMS:
            return [GradientResult(o.reshape(b, k), value, ge, gd, nb) for o, ge, gd, value, nb, (b, k, _, _)
                    in zip(outs, edges, deltas, losses, norms, shapes)]
        return [GradientResult(o.reshape(b, k), value, ge.reshape(b, e), gd.reshape(b, n), nb)
                for o, ge, gd, value, nb, (b, k, e, n) in zip(outs, edges, deltas, losses, norms, shapes)]


    def put(self, i: int, result: GradientResult) -> None:
        """Write network i's result (from the single-network engine) in place of what the slab computed."""
        for flat, starts, values in ((self.outputs, self.out_starts, result.outputs),
                                     (self.edges, self.edge_starts, result.edge_grads),
                                     (self.deltas, self.node_starts, result.deltas),
                                     (self.norms, self.norm_starts, result.norms)):
            if flat.size and starts[i + 1] > starts[i] and values is not None:
                flat[starts[i]:starts[i + 1]] = np.asarray(values).reshape(-1)
        self.loss[i] = 0.0 if result.loss is None else result.loss


class FlatResults(NamedTuple):
    """Every network's results as one flat array per field: each network's field flattened (C order), network
    after network (the layout of a population job's result fields)."""

    outputs: np.ndarray
    edge_grads: np.ndarray   #: empty for the forward pass alone
    deltas: np.ndarray       #: empty for the forward pass alone
    loss: np.ndarray         #: (P,) float64 (zeros in output mode)
    norms: np.ndarray        #: empty unless asked for

    @classmethod
    def join(cls, slabs: list[SlabResults]) -> FlatResults:
        """The slabs' arrays, one after another (a single slab's as they are)."""
        def cat(arrays: list[np.ndarray]) -> np.ndarray:
            return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return cls(cat([s.outputs for s in slabs]), cat([s.edges for s in slabs]), cat([s.deltas for s in slabs]),
                   cat([s.loss for s in slabs]), cat([s.norms for s in slabs]))

    @classmethod
    def of(cls, results: list[GradientResult], mode: int) -> FlatResults:
        """The flat arrays of per-network results (the numpy path's)."""
        def cat(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])
        outputs = cat([r.outputs for r in results])
        empty = outputs[:0]
        if mode == FORWARD:
            return cls(outputs, empty, empty, np.zeros(len(results)), empty)
        norms = cat([r.norms for r in results if r.norms is not None]) if results[0].norms is not None else empty
        return cls(outputs, cat([r.edge_grads for r in results]), cat([r.deltas for r in results]),
                   np.array([r.loss or 0.0 for r in results], dtype=np.float64), norms)


def allocate(mode: int, batch: np.ndarray, k: np.ndarray, e: np.ndarray, n: np.ndarray,
             dtype: np.dtype, norms: bool = False) -> SlabResults:
    """The result arrays of a slab (loss-mode sums zeroed: the row chunks add into them); ``norms``: with
    per-example norms."""
    sizes = {OUTPUTS: (batch * k * e, batch * k * n), SUMS: (e, n), EXAMPLES: (batch * e, batch * n)}
    edge_sizes, node_sizes = sizes.get(mode, (np.zeros_like(e), np.zeros_like(n)))
    out_starts, edge_starts, node_starts = _starts(batch * k), _starts(edge_sizes), _starts(node_sizes)
    make = np.zeros if mode == SUMS else np.empty
    return SlabResults(mode, batch, k, e, n, np.empty(out_starts[-1], dtype=dtype), out_starts,
                       make(edge_starts[-1], dtype=dtype), edge_starts, make(node_starts[-1], dtype=dtype),
                       node_starts, np.zeros(batch.size, dtype=np.float64), np.zeros(batch.size, dtype=np.int8),
                       np.empty(int(batch.sum()) if norms else 0, dtype=dtype), _starts(batch))


def _pieces(flat: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
    """``flat[starts[i]:starts[i+1]]`` for every i (views)."""
    bounds = starts.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def redo(nets: Sequence[Network] | PopulationColumns, p: int, x: Rows, t: Rows | None, loss: str | None, mean: bool, mode: int,
         dtype: np.dtype, norms: bool = False, clip_norm: float | None = None,
         span: RowSpan | None = None) -> GradientResult:
    """Network ``p`` alone on the single-network engine, for one that failed in a population pass (an overflow,
    bce outputs outside [0, 1], a norm to rescale): its result, or its own message as ``nets[p]: ...``
    (``span``: these rows are a part of a bigger batch, as ``partial_gradients`` takes them)."""
    from .api import gradients, partial_gradients

    reduction, targets = "mean" if mean else "sum", None if t is None else t.of(p)
    try:
        if span is None:
            result = gradients(nets[p], x.of(p), targets, loss, reduction, mode == EXAMPLES, dtype.name, norms=norms,
                               clip_norm=clip_norm)
        else:
            result = partial_gradients(nets[p], x.of(p), targets, loss, reduction, mode == EXAMPLES, dtype.name,
                                       total_rows=int(span.total[p]), row_offset=span.offset, norms=norms,
                                       clip_norm=clip_norm)
    except InvalidInput as exc:
        raise InvalidInput(f"nets[{p}]: {exc}") from None
    return result
