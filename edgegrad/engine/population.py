"""``gradients_many``, ``outputs_many`` and ``outputs``: many networks in one engine call per slab.

Networks are cut into slabs of consecutive networks (at most ``SLAB_EDGES`` edges and nodes each, so
packing memory stays bounded whatever P is); each slab is packed (``population_pack``, topology
cached) and run by the population kernel (``population_kernel``: every network of the slab in one
compiled, parallel call), and its results are split back per network, in each network's own file
order. A network's result never depends on which networks share its call.

With ``EDGEGRAD_KERNEL=numpy`` (or where numba does not load) ``population_numpy`` runs instead:
level by level across the networks with the same rows, vectorised with numpy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from ..model.network import Network
from ..model.population import PopulationColumns
from . import kernelcache
from .batch import check_options
from .clipping import check_clipping
from .memory import thread_count
from .pool import PARALLEL_MIN_WORK
from .population_checks import Rows, check_nets, check_population
from .population_pack import Packed, pack
from .population_results import (
    EXAMPLES,
    FORWARD,
    OUTPUTS,
    SUMS,
    FlatResults,
    RowSpan,
    SlabResults,
    allocate,
    redo,
    row_chunks,
)
from .result import GradientResult

__all__ = ["gradients_many", "outputs_many", "outputs", "flat_results", "SLAB_EDGES", "BLOCKS_PER_THREAD"]

#: edges + nodes of one slab of networks (packing temporaries stay within about 100 MB)
SLAB_EDGES = 1 << 19
#: blocks of consecutive networks per kernel thread (the threads balance uneven blocks)
BLOCKS_PER_THREAD = 4

log = logging.getLogger(__name__)
#: the networks of a call: Network objects, or the same in columns
Nets = list[Network] | PopulationColumns
_serial = threading.Lock()
_layer: str | None = None   #: numba's threading layer, known after the first kernel call


def gradients_many(nets: Any, inputs: Any, targets: Any = None, loss: str | None = None, reduction: str = "mean",
                   per_example: bool = False, dtype: str = "float64", norms: bool = False,
                   clip_norm: float | None = None) -> list[GradientResult]:
    """``edgegrad.gradients`` of every network of ``nets``, in one engine call per slab (see the contract).

    ``nets``: ``Network`` objects, or the same in columns (``edgegrad.model.population.PopulationColumns``).
    ``inputs`` and ``targets`` are each shared (one 2-D array) or per network (a list of 2-D arrays).
    ``norms`` and ``clip_norm`` (loss mode) as for ``gradients``, with one ``clip_norm`` for every network.
    """
    nets = check_nets(nets)
    clip = check_clipping(loss, norms, clip_norm)
    dtype, x, t = check_population(nets, inputs, targets, loss, reduction, dtype, per_example)
    mode = OUTPUTS if loss is None else (EXAMPLES if per_example else SUMS)
    return _run(nets, x, t, loss, reduction == "mean", mode, dtype, _Norms(bool(norms) or clip is not None, clip))


def outputs_many(nets: Any, inputs: Any, dtype: str = "float64") -> list[np.ndarray]:
    """The B×K outputs of every network (the forward pass only: no derivative is computed)."""
    nets = check_nets(nets)
    dtype, x, _ = check_population(nets, inputs, None, None, "mean", dtype, False)
    return [r.outputs for r in _run(nets, x, None, None, True, FORWARD, dtype)]


def outputs(net: Network, inputs: Any, dtype: str = "float64") -> np.ndarray:
    """B×K outputs of ``net`` for a batch: ``gradients(net, inputs).outputs`` without the derivatives."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be an edgegrad.Network, got {type(net).__name__}")
    x, _ = check_options(net, inputs, None, None, "mean", dtype)
    return _run([net], Rows(x, None), None, None, True, FORWARD, np.dtype(dtype).name)[0].outputs


class _Norms(NamedTuple):
    """Per-example norms (``wanted``) and clipping (``clip_norm``, None for none) of a loss-mode call."""

    wanted: bool = False
    clip_norm: float | None = None


#: a call without norms or clipping
NO_NORMS = _Norms()


def _compiled_kernel() -> Any:
    """The population kernel module, or None where the kernel setting is numpy or numba does not load."""
    return kernelcache.compiled("population_kernel", "population kernel")


@contextmanager
def _launch(numba: Any) -> Iterator[None]:
    """Run a kernel call: one at a time where numba's threading layer is ``workqueue`` (not thread-safe) or
    not known yet, concurrently from several threads otherwise (omp, tbb)."""
    global _layer
    if _layer is not None and _layer != "workqueue":
        yield
        return
    with _serial:
        yield
        _layer = numba.threading_layer()


def _slabs(nets: Nets) -> list[tuple[int, int]]:
    """Consecutive networks with at most ``SLAB_EDGES`` edges and nodes together (one network at least)."""
    if isinstance(nets, PopulationColumns):
        size = nets.n_edges_each + nets.n_nodes_each + 1
    else:
        size = np.fromiter((n.src.size + len(n.node_ids) + 1 for n in nets), dtype=np.int64, count=len(nets))
    total = np.cumsum(size)
    cuts, start = [0], 0
    while start < len(nets):
        stop = int(np.searchsorted(total, (total[start - 1] if start else 0) + SLAB_EDGES, side="right"))
        stop = max(stop, start + 1)
        cuts.append(stop)
        start = stop
    return list(zip(cuts[:-1], cuts[1:]))


def _run(nets: Nets, x: Rows, t: Rows | None, loss: str | None, mean: bool, mode: int,
         dtype: str, norms: _Norms = NO_NORMS) -> list[GradientResult]:
    slabs = _slab_results(nets, x, t, loss, mean, mode, dtype, norms, None)
    if slabs is None:
        return _numpy_run(nets, x, t, loss, mean, mode, dtype, norms)
    return [result for slab in slabs for result in slab.split()]


def _numpy_run(nets: Nets, x: Rows, t: Rows | None, loss: str | None, mean: bool, mode: int,
               dtype: str, norms: _Norms, span: RowSpan | None = None) -> list[GradientResult]:
    from . import population_numpy
    listed = nets.networks() if isinstance(nets, PopulationColumns) else nets
    return population_numpy.run(listed, x, t, loss, "mean" if mean else "sum", mode, dtype, norms.wanted,
                                norms.clip_norm, span)


def _slab_results(nets: Nets, x: Rows, t: Rows | None, loss: str | None, mean: bool, mode: int,
                  dtype: str, norms: _Norms, span: RowSpan | None) -> list[SlabResults] | None:
    """Every slab's result arrays from the compiled kernel, or None where it is not used."""
    kernel = _compiled_kernel()
    if kernel is None:
        return None
    slabs: list[SlabResults] = []
    for lo, hi in _slabs(nets):
        part = nets.slice(lo, hi) if isinstance(nets, PopulationColumns) else nets[lo:hi]
        packed = pack(part, np.dtype(dtype), range(lo, hi))
        slabs.append(_run_slab(kernel, nets, lo, hi, packed, x, t, loss, mean, mode, np.dtype(dtype), norms, span))
    return slabs


def flat_results(nets: Any, inputs: Any, targets: Any = None, loss: str | None = None, reduction: str = "mean",
                 per_example: bool = False, dtype: str = "float64", norms: bool = False,
                 clip_norm: float | None = None, outputs_only: bool = False,
                 span: RowSpan | None = None) -> FlatResults:
    """``gradients_many`` (``outputs_many`` with ``outputs_only``) with its results as one flat array per field,
    every network's part after the one before (a population job's layout), without a result object per network.

    ``span``: these rows are a part of each network's whole batch (a population job's row shard): ``"mean"``
    divides by the whole batch's rows and messages name rows of the whole batch, as ``partial_gradients``."""
    nets = check_nets(nets)
    if outputs_only:
        dtype, x, t = check_population(nets, inputs, None, None, "mean", dtype, False)
        mode, how = FORWARD, NO_NORMS
    else:
        clip = check_clipping(loss, norms, clip_norm)
        dtype, x, t = check_population(nets, inputs, targets, loss, reduction, dtype, per_example)
        mode = OUTPUTS if loss is None else (EXAMPLES if per_example else SUMS)
        how = _Norms(bool(norms) or clip is not None, clip)
    slabs = _slab_results(nets, x, t, loss, reduction == "mean", mode, dtype, how, span)
    if slabs is None:
        return FlatResults.of(_numpy_run(nets, x, t, loss, reduction == "mean", mode, dtype, how, span), mode)
    return FlatResults.join(slabs)


def _flat(rows: Rows, lo: int, hi: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(one flat array of every network's rows, offset of each network's rows in it, rows of each network)."""
    if rows.each is None:
        shared = rows.of(0)
        flat = np.ascontiguousarray(shared, dtype=dtype).reshape(-1)
        return flat, np.zeros(hi - lo, dtype=np.int64), np.full(hi - lo, shared.shape[0], dtype=np.int64)
    arrays = rows.each[lo:hi]
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    offsets = np.zeros(hi - lo, dtype=np.int64)
    np.cumsum(sizes[:-1], out=offsets[1:])
    flat = np.concatenate([a.reshape(-1) for a in arrays]).astype(dtype, copy=False)
    return flat, offsets, np.array([a.shape[0] for a in arrays], dtype=np.int64)


def _blocks(cost: np.ndarray, threads: int) -> np.ndarray:
    """Network ranges of about equal cost, ``BLOCKS_PER_THREAD`` per thread (boundaries never change results)."""
    parts = max(1, min(cost.size, threads * BLOCKS_PER_THREAD))
    total = np.cumsum(cost, dtype=np.float64)
    cuts = np.searchsorted(total, np.linspace(0.0, total[-1], parts + 1)[1:-1], side="right")
    return np.unique(np.concatenate([[0], cuts, [cost.size]])).astype(np.int64)


def _run_slab(kernel: Any, nets: Nets, lo: int, hi: int, packed: Packed, x: Rows, t: Rows | None,
              loss: str | None, mean: bool, mode: int, dtype: np.dtype, norms: _Norms,
              span: RowSpan | None = None) -> SlabResults:
    """One kernel call on networks [lo, hi): the slab's result arrays (``span``: see ``flat_results``)."""
    import numba

    top = packed.topology
    xs, x_off, batch = _flat(x, lo, hi, dtype)
    if t is not None:
        ts, t_off, _ = _flat(t, lo, hi, np.dtype(np.float64))
    else:
        ts, t_off = np.zeros(1), np.zeros(hi - lo, dtype=np.int64)
    res = allocate(mode, batch, top.n_out, top.n_edges, top.n_nodes, dtype, norms.wanted)
    cost = (top.n_edges + top.n_nodes + 1) * batch
    threads = max(1, min(thread_count(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if int(cost.sum()) < PARALLEL_MIN_WORK:  # waking the pool would cost more than the work (a batch of tiny jobs)
        threads = 1
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    blocks = _blocks(cost, threads)
    with np.errstate(all="ignore"), _launch(numba):
        kernel.run_population(mode, kernel.LOSS_CODES.get(loss, 0), mean, blocks, top.n_in, top.n_nodes,
                              top.n_live, top.n_out, top.n_edges, top.node_off, top.vert_off, top.edge_off,
                              top.out_off, top.in_ptr, top.in_src, packed.in_w, packed.bias, top.codes,
                              top.out_ptr, top.out_dst, packed.out_w, top.out_k, top.out_rows, top.f_src,
                              top.f_dst, top.node_row, batch,
                              batch if span is None else span.total[lo:hi].astype(np.int64), row_chunks(top.n_in, top.n_nodes, top.n_out),
                              xs, x_off, ts, t_off, res.outputs, res.out_starts, res.edges, res.edge_starts,
                              res.deltas, res.node_starts, res.loss, res.status, norms.wanted,
                              norms.clip_norm or 0.0, res.norms, res.norm_starts)
    for i in np.flatnonzero(res.status).tolist():   # rare: named (or a norm rescaled) by the network alone
        res.put(i, redo(nets, lo + i, x, t, loss, mean, mode, dtype, norms.wanted, norms.clip_norm, span))
    return res
