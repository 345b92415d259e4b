"""Compile a network once into an execution plan: level-ordered rows, per-level products, index maps.

Rows of the activation buffer are the vertices in *plan order*: the inputs first (file order), then
the computed nodes sorted by (topological level, activation, file position). Each level is a
contiguous block of rows and each activation a contiguous run inside it, so a whole level runs as
one sparse (or dense, BLAS) product plus one vectorised activation call per activation present.
Plans are cached by the network's content hash.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..model.activations import ACTIVATION_NAMES, ACTIVATIONS, Activation, activation_code
from ..model.network import Network
from ..settings import Settings
from .batch import check_float32_range
from .dense import DenseEntry, DenseGrad, DenseGrads, compile_dense_grads
from .memory import GROUP_ROWS

__all__ = ["Plan", "Level", "Block", "Product", "GradGroup", "compile_plan", "get_plan", "clear_plan_cache",
           "plan_cache_stats", "reaches_output"]

#: a level's in- or out-edges go to BLAS when at least this share of the block they span is set
DENSE_MIN_DENSITY = 0.25
#: blocks of at most this many cells are always dense: a tiny BLAS product beats building a sparse matrix
SMALL_BLOCK_CELLS = 4096
#: sparse products are split into row chunks of about this many stored entries (for the thread pool)
CHUNK_NNZ = 8_192
#: plans kept by default (the ``plan_cache`` setting, EDGEGRAD_PLAN_CACHE, overrides it)
PLAN_CACHE_SIZE: int = Settings.plan_cache
#: a dense level's summed edge gradients use one BLAS product from this many edges (else per-edge groups)
DENSE_GRAD_MIN_EDGES = 4096
#: levels of at most this many nodes are narrow: per-call overhead rules there, so the forward pass
#: computes only f and f'(z) follows for all narrow nodes at once, one call per activation
NARROW_NODES = 32
#: in-edges of one node taken at a time by the summed edge gradients (a node with more is split)
GROUP_DEGREE = GROUP_ROWS


@dataclass(frozen=True)
class Product:
    """``rows[lo:hi] = matrix @ buffer[cols]``: a sparse or dense product over one block of rows."""

    lo: int                          #: first row, relative to the level's first node row
    hi: int
    matrix: sp.csr_matrix | np.ndarray
    cols: slice | np.ndarray         #: rows of the source buffer the matrix columns refer to
    dense: bool


@dataclass(frozen=True)
class Block:
    """A run of nodes in one level sharing one activation."""

    lo: int                          #: rows relative to the level's first node row
    hi: int
    activation: Activation


@dataclass(frozen=True, kw_only=True)
class Level:
    """One topological level: node rows ``[start, stop)`` of the delta buffer (add ``n_inputs`` for activations)."""

    start: int
    stop: int
    bias: np.ndarray                 #: (stop-start, 1)
    blocks: tuple[Block, ...]
    forward: tuple[Product, ...]     #: z = W_in @ activations: the whole level, then its row chunks if any
    backward: tuple[Product, ...]    #: Σ_c w(v,c) δ(c) = W_out @ deltas, laid out the same way
    dense_grad: DenseGrad | None = None  #: the level's summed gradients as one BLAS block (see dense.py)
    block_starts: tuple[int, ...] = ()  #: ``lo`` of each block, for finding a piece's blocks
    outputs: tuple[tuple[int, int], ...] = ()  #: (output index k, row in the level) of outputs here
    forward_work: int = 0            #: multiply-adds per example of the forward product
    backward_work: int = 0           #: multiply-adds per example of the backward product
    runs: tuple[tuple[Callable[..., Any], slice, slice, slice], ...] = ()
    #: per block: (fused f and f' — or f alone when ``narrow`` —, rows in the level, activation rows,
    #: f'(z) rows), for the inline path
    narrow: bool = False             #: computed inline, f'(z) left to the plan's ``narrow_derivatives``


@dataclass(frozen=True)
class GradGroup:
    """Nodes (or pieces of a node's in-edges) with the same number ``d`` of in-edges, for the summed gradients.

    One δ row per node is broadcast over its ``d`` in-edges: ``Σ_b o[src[i, j], b] · δ[node_rows[i], b]``.
    """

    node_rows: np.ndarray            #: (n,) δ row of each node
    src_rows: np.ndarray             #: (n, d) activation rows of the in-edges' sources
    file_edges: np.ndarray           #: (n, d) file edge index of each in-edge


@dataclass(kw_only=True)
class Plan:
    """Everything one forward + δ-backward pass needs, in arrays."""

    n_inputs: int
    n_nodes: int
    dtype: np.dtype
    levels: tuple[Level, ...]
    node_row: np.ndarray             #: file node index -> node row (plan order)
    output_rows: np.ndarray          #: (K,) node rows of the outputs
    edge_file: np.ndarray            #: plan edge position -> file edge index
    edge_src: np.ndarray             #: plan edge position -> activation row of src
    edge_dst: np.ndarray             #: plan edge position -> node row of dst
    sparse_edges: np.ndarray         #: plan edge positions whose summed gradient is a per-edge product
    grad_groups: tuple[GradGroup, ...]  #: those edges, grouped by their node's (piece's) in-degree
    file_src: np.ndarray             #: file edge -> activation row of src
    file_dst: np.ndarray             #: file edge -> node row of dst
    n_live: int = -1                 #: node rows [0, n_live) are computed; the rest reach no output (δ = 0)
    dead_edges: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: file edges into nodes that reach no output (their derivative is 0)
    dense: DenseGrads = field(default_factory=DenseGrads)  #: dense levels' summed gradients
    narrow_derivatives: tuple[tuple[Activation, np.ndarray, np.ndarray], ...] = ()
    #: per activation: (it, node rows, activation rows) of the narrow levels' nodes, f'(z) in one call each
    edge_weight: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: plan edge position -> weight
    node_bias: np.ndarray = field(default_factory=lambda: np.zeros(0))    #: node row -> bias
    node_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: node row -> activation code
    numba_arrays: Any = None         #: the numba kernel's arrays (``numba_kernel.numba_plan``), built on first use


def _split_rows(indptr: np.ndarray, lo: int, hi: int, boundaries: list[int]) -> list[tuple[int, int]]:
    """Cut rows [lo, hi) at the given boundaries and into pieces of about CHUNK_NNZ entries."""
    cuts = sorted({lo, hi, *[b for b in boundaries if lo < b < hi]})
    pieces: list[tuple[int, int]] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        nnz = indptr[b] - indptr[a]
        parts = max(1, int(nnz // CHUNK_NNZ))
        edges = np.searchsorted(indptr[a:b + 1], np.linspace(indptr[a], indptr[b], parts + 1)[1:-1])
        rows = sorted({a, b, *[a + int(x) for x in edges if 0 < x < b - a]})
        pieces.extend(zip(rows[:-1], rows[1:]))
    return pieces


def _products(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, col_offset: int,
             boundaries: list[int], dtype: np.dtype) -> tuple[Product, ...]:
    """Row-chunked products for one level's entries (row-sorted COO triplets).

    Dense (BLAS) when the entries fill enough of the block they span, or when that block is so
    small that building a sparse matrix would cost more than it saves; sparse (CSR over the
    prefix of source rows it reads) otherwise: then the first product is the whole level and, when
    it splits, the rest are its row chunks (views sharing its arrays) for the thread pool.
    """
    if rows.size == 0:
        return ()
    used = np.unique(cols)
    cells = n_rows * used.size
    if rows.size >= DENSE_MIN_DENSITY * cells or cells <= SMALL_BLOCK_CELLS:
        contiguous = used[-1] - used[0] + 1 == used.size
        where = slice(col_offset + int(used[0]), col_offset + int(used[-1]) + 1) if contiguous else used + col_offset
        block = np.zeros((n_rows, used.size), dtype=dtype)
        block[rows, np.searchsorted(used, cols)] = vals
        return (Product(0, n_rows, block, where, True),)
    width = int(used[-1]) + 1
    matrix = sp.csr_matrix((vals.astype(dtype), (rows, cols)), shape=(n_rows, width))
    matrix.sort_indices()
    where = slice(col_offset, col_offset + width)
    pieces = _split_rows(matrix.indptr, 0, n_rows, boundaries)
    whole = Product(0, n_rows, matrix, where, False)
    if len(pieces) == 1:
        return (whole,)
    return (whole,) + tuple(Product(lo, hi, _row_view(matrix, lo, hi), where, False) for lo, hi in pieces)


def _row_view(matrix: sp.csr_matrix, lo: int, hi: int) -> sp.csr_matrix:
    """Rows [lo, hi) of a CSR matrix sharing its data and indices (only the row pointers are new)."""
    a, b = int(matrix.indptr[lo]), int(matrix.indptr[hi])
    view = sp.csr_matrix((matrix.data[a:b], matrix.indices[a:b], matrix.indptr[lo:hi + 1] - a),
                         shape=(hi - lo, matrix.shape[1]), copy=False)
    view.has_sorted_indices = True
    return view


def reaches_output(net: Network) -> np.ndarray:
    """Per computed node (file order): whether some path leads from it to an output (outputs included)."""
    n_in = net.n_inputs
    live = np.zeros(n_in + net.n_nodes, dtype=bool)
    live[n_in + net.output_index] = True
    src_level = net.levels[net.src]
    by_level = np.argsort(-src_level, kind="stable")             # edges by source level, deepest first
    bounds = np.flatnonzero(np.diff(src_level[by_level])) + 1
    for edges in np.split(by_level, bounds):                     # a level's sources read only deeper nodes
        live[net.src[edges[live[net.dst[edges]]]]] = True
    return live[n_in:]


def _product_work(products: tuple[Product, ...], n_rows: int) -> int:
    """Multiply-adds per example of a level's product (rows when there is none: the zero fill)."""
    if not products:
        return n_rows
    matrix = products[0].matrix
    return matrix.size if isinstance(matrix, np.ndarray) else matrix.nnz


def compile_plan(net: Network, dtype: str | np.dtype = "float64", live_only: bool = True) -> Plan:
    """Build the execution plan of ``net`` for ``dtype`` (float64 or float32).

    With ``live_only`` nodes that reach no output are left out of every level and product (their
    rows come last, held at 0); without it every node is computed (for node values).
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        check_float32_range(net.biases, "nodes[{}].bias")
        check_float32_range(net.weights, "edges[{}].weight")
    n_in, n = net.n_inputs, net.n_nodes
    node_level = net.levels[n_in:]
    dead = ~reaches_output(net) if live_only else np.zeros(n, dtype=bool)
    n_live = n - int(dead.sum())
    codes = np.array([activation_code(a) for a in net.activations], dtype=np.int64)
    order = np.lexsort((np.arange(n), codes, node_level, dead))    # plan row -> file node (dead ones last)
    node_row = np.empty(n, dtype=np.int64)
    node_row[order] = np.arange(n)
    vertex_row = np.concatenate([np.arange(n_in), n_in + node_row])  # file vertex -> activation row

    src_row = vertex_row[net.src]
    dst_node_row = node_row[net.dst - n_in]
    edge_order = np.lexsort((src_row, dst_node_row))                # plan edge -> file edge
    e_src, e_dst = src_row[edge_order], dst_node_row[edge_order]
    e_w = net.weights[edge_order]

    sorted_levels = node_level[order[:n_live]]
    sorted_codes = codes[order]
    level_values, level_starts = np.unique(sorted_levels, return_index=True)
    level_bounds = list(level_starts) + [n_live]
    edge_level_start = np.searchsorted(e_dst, level_bounds)
    n_live_edges = int(edge_level_start[-1])                         # edges into dead nodes come last
    # out-edges grouped by source node row, for the pull-style backward product
    out_order = np.lexsort((e_dst[:n_live_edges], e_src[:n_live_edges]))
    o_src, o_dst, o_w = e_src[out_order], e_dst[out_order], e_w[out_order]

    out_rows = node_row[net.output_index]
    levels = []
    dense_positions = []
    dense_entries: list[DenseEntry] = []
    narrow_rows: list[np.ndarray] = []
    for li in range(len(level_values)):
        start, stop = int(level_bounds[li]), int(level_bounds[li + 1])
        run_starts = np.flatnonzero(np.diff(sorted_codes[start:stop])) + 1
        cuts = [0, *run_starts.tolist(), stop - start]
        blocks = tuple(Block(a, b, ACTIVATIONS[ACTIVATION_NAMES[sorted_codes[start + a]]])
                       for a, b in zip(cuts[:-1], cuts[1:]))
        boundaries: list[int] = []         # pieces may span activation runs: chunks follow the nnz only
        e0, e1 = int(edge_level_start[li]), int(edge_level_start[li + 1])
        forward = _products(e_dst[e0:e1] - start, e_src[e0:e1], e_w[e0:e1], stop - start, 0, boundaries, dtype)
        o0, o1 = np.searchsorted(o_src, [n_in + start, n_in + stop])
        backward = _products(o_src[o0:o1] - n_in - start, o_dst[o0:o1] - stop, o_w[o0:o1], stop - start, stop,
                            boundaries, dtype)
        if forward and forward[0].dense and e1 - e0 >= DENSE_GRAD_MIN_EDGES:
            cols = forward[0].cols
            used = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else cols
            cells = (e_dst[e0:e1] - start) * used.size + np.searchsorted(used, e_src[e0:e1])
            dense_entries.append(DenseEntry(li, start, stop, cols, used.size, edge_order[e0:e1], cells))
            dense_positions.append(np.arange(e0, e1))
        here = np.flatnonzero((out_rows >= start) & (out_rows < stop)).tolist()
        narrow = stop - start <= NARROW_NODES
        if narrow:
            narrow_rows.append(np.arange(start, stop))
        levels.append(Level(
            start=start, stop=stop, bias=net.biases[order[start:stop]].astype(dtype)[:, None], blocks=blocks,
            forward=forward, backward=backward, block_starts=tuple(b.lo for b in blocks),
            outputs=tuple((k, int(out_rows[k]) - start) for k in here),
            forward_work=_product_work(forward, stop - start), backward_work=_product_work(backward, stop - start),
            runs=tuple((b.activation.forward if narrow else b.activation.fused, slice(b.lo, b.hi),
                        slice(n_in + start + b.lo, n_in + start + b.hi), slice(start + b.lo, start + b.hi))
                       for b in blocks),
            narrow=narrow))

    dense = compile_dense_grads(dense_entries)
    for entry, grad in zip(dense_entries, dense.levels):
        levels[entry.level] = replace(levels[entry.level], dense_grad=grad)
    dense_mask = np.zeros(e_src.size, dtype=bool)
    for positions in dense_positions:
        dense_mask[positions] = True
    dense_mask[n_live_edges:] = True                                 # not per-edge products either: 0
    sparse_edges = np.flatnonzero(~dense_mask)
    return Plan(n_inputs=n_in, n_nodes=n, dtype=dtype, levels=tuple(levels), node_row=node_row,
                output_rows=node_row[net.output_index], edge_file=edge_order, edge_src=e_src, edge_dst=e_dst,
                sparse_edges=sparse_edges, grad_groups=_grad_groups(sparse_edges, e_src, e_dst, edge_order),
                file_src=src_row, file_dst=dst_node_row, n_live=n_live, dead_edges=edge_order[n_live_edges:],
                dense=dense, narrow_derivatives=_by_activation(narrow_rows, sorted_codes, n_in),
                edge_weight=e_w.astype(dtype), node_bias=net.biases[order].astype(dtype), node_codes=sorted_codes)


def _by_activation(rows: list[np.ndarray], codes: np.ndarray, n_in: int
                   ) -> tuple[tuple[Activation, np.ndarray, np.ndarray], ...]:
    """Node rows (and activation rows) of the narrow levels, grouped by activation."""
    if not rows:
        return ()
    every = np.concatenate(rows)
    groups = []
    for code in np.unique(codes[every]).tolist():
        these = every[codes[every] == code]
        groups.append((ACTIVATIONS[ACTIVATION_NAMES[code]], these, these + n_in))
    return tuple(groups)


def _grad_groups(sparse: np.ndarray, e_src: np.ndarray, e_dst: np.ndarray,
                 edge_order: np.ndarray) -> tuple[GradGroup, ...]:
    """Group the per-edge gradient edges by in-degree; each node's in-edges cut into pieces of ≤ GROUP_DEGREE.

    ``sparse`` are plan edge positions, sorted by destination, so each node's in-edges are a run.
    """
    if sparse.size == 0:
        return ()
    dst = e_dst[sparse]
    new_node = np.ones(dst.size, dtype=bool)
    new_node[1:] = dst[1:] != dst[:-1]
    node_start = np.flatnonzero(new_node)
    rank = np.arange(dst.size) - node_start[np.cumsum(new_node) - 1]   # position within its node's run
    starts = np.flatnonzero(new_node | (rank % GROUP_DEGREE == 0))
    sizes = np.diff(np.append(starts, dst.size))
    groups = []
    for d in np.unique(sizes).tolist():
        first = starts[sizes == d]
        where = sparse[first[:, None] + np.arange(d)]                    # (n, d) plan edge positions
        groups.append(GradGroup(e_dst[where[:, 0]], e_src[where], edge_order[where]))
    return tuple(groups)


_cache: OrderedDict[tuple[str, str, bool], Plan] = OrderedDict()
_cache_lock = threading.Lock()
_cache_stats = [0, 0]  #: hits, misses (read by edgegrad.metrics)


def get_plan(net: Network, dtype: str | np.dtype = "float64", live_only: bool = True) -> Plan:
    """The cached plan of ``net`` for ``dtype`` (see ``compile_plan``), compiled on first use (LRU of PLAN_CACHE_SIZE)."""
    key = (net.content_hash, np.dtype(dtype).name, live_only)
    with _cache_lock:
        plan = _cache.get(key)
        if plan is not None:
            _cache.move_to_end(key)
            _cache_stats[0] += 1
            return plan
        _cache_stats[1] += 1
    plan = compile_plan(net, dtype, live_only)
    with _cache_lock:
        _cache[key] = plan
        size = Settings.read("plan_cache")
        while len(_cache) > (PLAN_CACHE_SIZE if size is None else size):
            _cache.popitem(last=False)
    return plan


def plan_cache_stats() -> tuple[int, int, int]:
    """(hits, misses, plans held) of the plan cache since the process started."""
    with _cache_lock:
        return _cache_stats[0], _cache_stats[1], len(_cache)


def clear_plan_cache() -> None:
    """Forget every cached plan."""
    with _cache_lock:
        _cache.clear()
