"""How much memory a gradients call needs, and how many rows one engine slab may hold.

A call runs its rows in slabs; one slab's *engine working memory* (activations, f'(z)/δ buffers,
per-level and per-edge-chunk temporaries) is kept under ``slab_budget()`` bytes, so it does not
grow with the batch. What does grow with the batch is the result (B×K outputs, and in per-example
or output mode the B×E / B×K×E derivatives): ``result_bytes_per_row`` of it per row.

The estimate per slab row, in elements of the dtype (s bytes each; I inputs, N nodes, E edges,
K outputs, W the widest level, default N, T kernel threads), is

    loss mode:    2·I + 2·N  activations (+ a float32 copy of x), f'(z)/δ   + 4·W level temporaries
                  + 8·K loss terms + 4·65 rows edge-gradient chunks gather at least
    per example:  2·I + 2·N + 4·W + 8·K + (I + 2·N) example-major copies of o and δ
    output mode:  2·I + 2·N + N·K δ per output + 4·W·K + (I + N + N·K) example-major copies + 4·K

plus, independent of the rows, 2 edge chunks of ``EDGE_CHUNK_BYTES`` per thread, 4·E·s for dense
gradient blocks and 3·(E + N)·s for the loss-mode sums. The figures are upper bounds by design
(tests compare them with traced peaks): a worker that sizes its shards by them stays inside its
budget. Between calls a process keeps up to 2 × the slab budget of scratch buffers cached
(``workspace``), which is not part of a call's estimate. A call with per-example norms (``norms``,
``clip_norm``) also holds its slab's sources' squares, N float64 per row, at most
``passes.squares_limit()`` (32 MiB or half the slab budget), beside the estimate.
"""

from __future__ import annotations

import os

import numpy as np

from ..settings import Settings

__all__ = ["SLAB_BYTES", "EDGE_CHUNK_BYTES", "GROUP_ROWS", "CACHE_BYTES", "thread_count", "slab_budget",
           "engine_bytes_per_row", "slab_rows", "working_memory_bytes",
           "result_bytes_per_row", "rows_for_budget", "edge_chunk_size"]

#: default engine working memory of one slab (the ``slab_bytes`` setting, EDGEGRAD_SLAB_BYTES, overrides it)
SLAB_BYTES: int = Settings.slab_bytes
#: bytes of one gathered operand in an edge-gradient chunk: operands and product fit in L2
EDGE_CHUNK_BYTES = 1024 * 1024
#: a slab's activation and δ buffers are kept within this (about an L3 cache) once it has MIN_CACHE_ROWS rows
CACHE_BYTES = 32 * 1024 * 1024
MIN_CACHE_ROWS = 64
#: the most in-edges of one node an edge-gradient chunk gathers (plan.GROUP_DEGREE)
GROUP_ROWS = 64


def thread_count() -> int:
    """Threads for the kernels: the ``threads`` setting (EDGEGRAD_THREADS), else the CPUs this process may run on."""
    configured = Settings.read("threads") or 0
    if configured > 0:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def slab_budget() -> int:
    """Engine working memory allowed for one slab: the ``slab_bytes`` setting (EDGEGRAD_SLAB_BYTES) if set,
    else ``SLAB_BYTES``."""
    configured = Settings.read("slab_bytes")
    return max(1, configured) if configured is not None else SLAB_BYTES


def edge_chunk_size(row_bytes: int, budget: int | None = None) -> int:
    """Edges per chunk when one edge's gathered row takes ``row_bytes``: ``EDGE_CHUNK_BYTES`` of them, ≥ 1."""
    return max(1, (EDGE_CHUNK_BYTES if budget is None else budget) // max(1, row_bytes))


def _itemsize(dtype: str | np.dtype) -> int:
    return np.dtype(dtype).itemsize


def _slab_row_elements(n_inputs: int, n_nodes: int, n_outputs: int, loss: str | None, per_example: bool,
                       widest: int) -> int:
    """Working-memory elements one slab row needs (see the module docstring)."""
    base = 2 * n_inputs + 2 * n_nodes                   # activations (+ a float32 copy of x) and f'(z)/δ
    if loss is None:
        return (base + n_nodes * n_outputs + 4 * widest * n_outputs + n_inputs + n_nodes + n_nodes * n_outputs
                + 4 * n_outputs)
    if per_example:                                      # + example-major copies of o and δ
        return base + 4 * widest + 8 * n_outputs + n_inputs + 2 * n_nodes
    # ≥ 1 node's rows per edge-gradient chunk, for up to 4 threads: a constant, so that slab boundaries
    # (and so the bits of a result) never depend on the thread count
    return base + 4 * widest + 8 * n_outputs + 4 * (GROUP_ROWS + 1)


def _fixed_bytes(n_nodes: int, n_edges: int, itemsize: int, rows: int) -> int:
    """Working memory that hardly depends on the rows: edge chunks (no bigger than all edges' rows), dense
    gradient blocks, loss-mode sums."""
    chunks = min(thread_count() * 2 * EDGE_CHUNK_BYTES, 2 * (n_edges + thread_count()) * rows * itemsize)
    return chunks + (4 * n_edges + 3 * (n_edges + n_nodes)) * itemsize


def engine_bytes_per_row(n_inputs: int, n_nodes: int, n_outputs: int, loss: str | None, per_example: bool,
                         dtype: str | np.dtype = "float64", widest_level: int | None = None) -> int:
    """Engine working memory one row of a slab needs (what an unslabbed call would need per row)."""
    return _slab_row_elements(n_inputs, n_nodes, n_outputs, loss, per_example,
                              n_nodes if widest_level is None else widest_level) * _itemsize(dtype)


def slab_rows(n_inputs: int, n_nodes: int, n_outputs: int, loss: str | None, per_example: bool,
              dtype: str | np.dtype = "float64", widest_level: int | None = None,
              budget: int | None = None) -> int:
    """Rows per slab: its row-dependent working memory fits ``budget`` (default ``slab_budget()``), and
    beyond ``MIN_CACHE_ROWS`` rows its activation and δ buffers fit ``CACHE_BYTES`` (faster: they stay in L3)."""
    s = _itemsize(dtype)
    per_row = engine_bytes_per_row(n_inputs, n_nodes, n_outputs, loss, per_example, dtype, widest_level)
    buffers = (n_inputs + 2 * n_nodes + (n_nodes * n_outputs if loss is None else 0)) * s
    in_cache = max(MIN_CACHE_ROWS, CACHE_BYTES // buffers)
    return max(1, min(in_cache, (slab_budget() if budget is None else budget) // per_row))


def result_bytes_per_row(n_nodes: int, n_edges: int, n_outputs: int, loss: str | None, per_example: bool,
                         dtype: str | np.dtype = "float64") -> int:
    """Bytes of the result arrays per row (loss mode counts the outputs twice: parts, then concatenated)."""
    s = _itemsize(dtype)
    if loss is None:
        return (n_outputs + n_outputs * n_edges + n_outputs * n_nodes) * s
    if per_example:
        return (n_outputs + n_edges + n_nodes) * s
    return 2 * n_outputs * s


def working_memory_bytes(n_inputs: int, n_nodes: int, n_edges: int, n_outputs: int, rows: int,
                         loss: str | None, per_example: bool, dtype: str | np.dtype = "float64", *,
                         widest_level: int | None = None, budget: int | None = None) -> int:
    """Estimated peak memory of a call of ``rows`` rows beyond its inputs and targets, result arrays included.

    ``widest_level`` (nodes in the network's widest level; default ``n_nodes``, an upper bound)
    tightens the estimate; ``budget`` is the slab budget the call will run under (default ``slab_budget()``).
    """
    s = _itemsize(dtype)
    in_slab = min(rows, slab_rows(n_inputs, n_nodes, n_outputs, loss, per_example, dtype, widest_level, budget))
    engine = engine_bytes_per_row(n_inputs, n_nodes, n_outputs, loss, per_example, dtype, widest_level) * in_slab
    return (engine + _fixed_bytes(n_nodes, n_edges, s, in_slab)
            + result_bytes_per_row(n_nodes, n_edges, n_outputs, loss, per_example, dtype) * rows)


def rows_for_budget(memory_bytes: int, n_inputs: int, n_nodes: int, n_edges: int, n_outputs: int,
                    loss: str | None, per_example: bool, dtype: str | np.dtype = "float64", *,
                    n_targets: int | None = None, widest_level: int | None = None,
                    budget: int | None = None) -> int:
    """The most rows whose inputs (float64, as validated), targets and ``working_memory_bytes`` fit ``memory_bytes``; 0 if none."""
    targets = (n_outputs if loss is not None else 0) if n_targets is None else n_targets
    per_row = result_bytes_per_row(n_nodes, n_edges, n_outputs, loss, per_example, dtype) + 8 * (n_inputs + targets)

    def need(rows: int) -> int:
        return working_memory_bytes(n_inputs, n_nodes, n_edges, n_outputs, rows, loss, per_example, dtype,
                                    widest_level=widest_level, budget=budget) + 8 * (n_inputs + targets) * rows

    low, high = 0, max(1, memory_bytes // max(1, per_row)) + 1       # need(high) > memory_bytes
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if need(mid) <= memory_bytes else (low, mid)
    return low
