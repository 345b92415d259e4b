"""Forward pass and δ-backpropagation over a plan, vectorised over the batch and levels.

Buffers are node-major (one row per vertex, one column per example) so every level is a row
block: ``acts`` holds o for every vertex, ``deltas`` holds f'(z) after the forward pass and is
turned into δ in place by the backward pass, level by level from the last:

    δ(v) = f_v'(z[v]) · (∂P/∂o[v]|direct + Σ_c w(v,c) δ(c))        ∂P/∂w(u,v) = δ(v) · o[u]

In output mode the delta buffer has K columns per example (one backward pass per output, all
at once). Independent row chunks of a level run on a small thread pool (numpy and scipy release
the GIL in these products, ``pool``). This is the numpy kernel; ``kernel.NumpyKernel`` drives it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from . import pool
from .dense import dense_grads
from .memory import edge_chunk_size, slab_budget, thread_count
from .plan import GradGroup, Level, Plan, Product
from .pool import run_all, spans, thread_spans
from .workspace import carve

__all__ = ["PassBuffers", "NodeValues", "pass_bytes", "pass_buffers", "squares_bytes", "squares_rows", "forward",
           "backward", "summed_edge_grads", "per_example_results", "plan_node_values"]


class PassBuffers(NamedTuple):
    """The buffers of one forward (+ backward) pass."""

    acts: np.ndarray     #: (I+N, B) o of every vertex, plan rows
    deltas: np.ndarray   #: (N, B) or (N, K, B): f'(z) after forward, δ after backward
    fprime: np.ndarray   #: (N, B) f'(z); the same array as ``deltas`` in loss mode
    squares: np.ndarray | None = None  #: (N, B) float64 1 + Σ_{(u,v)} o[u]² per node row (per-example norms; as the
    #: kernel's ``example_squares`` reads it: numpy's holds a fully connected level's in its first row), or None


class NodeValues(NamedTuple):
    """Per-example values of every node in file order, for explanations and checks."""

    z: np.ndarray        #: B×N pre-activations
    o: np.ndarray        #: B×(I+N) outputs of every vertex (inputs first)
    fprime: np.ndarray   #: B×N f'(z)


def _product(product: Product, source: np.ndarray) -> np.ndarray:
    """``product.matrix @ source[product.cols]``; sparse products read a row prefix without copying it."""
    return product.matrix @ source[product.cols]


Piece = tuple[int, int, "Product | np.ndarray | None"]


def _pieces(products: tuple[Product, ...], cuts: list[tuple[int, int]], source: np.ndarray,
            split: bool = True) -> list[Piece]:
    """Split a level's product into independent row pieces.

    A dense product runs once here (BLAS threads on its own) and the pieces slice its result by
    ``cuts``; sparse products are the pieces themselves — the level's row chunks when ``split``,
    else its whole product (one call); no product means it is zero.
    """
    if products and products[0].dense:
        full = _product(products[0], source)
        return [(lo, hi, full) for lo, hi in cuts]
    if not products:
        return [(lo, hi, None) for lo, hi in cuts]
    chosen = products[1:] if split and len(products) > 1 else products[:1]
    return [(k.lo, k.hi, k) for k in chosen]


def _evaluate(piece: Piece, source: np.ndarray) -> np.ndarray:
    """The product rows of one piece, as a fresh (or exclusively owned) array."""
    lo, hi, product = piece
    if product is None:
        return np.zeros((hi - lo, source.shape[1]), dtype=source.dtype)
    if isinstance(product, np.ndarray):
        return product[lo:hi]
    return _product(product, source)


def _forward_piece(plan: Plan, level: Level, piece: Piece, acts: np.ndarray, fprime: np.ndarray,
              z_out: np.ndarray | None) -> None:
    """z = W_in·o + bias, then o = f(z) and f'(z) for the activation runs of one piece of a level."""
    lo, hi, _ = piece
    z = _evaluate(piece, acts)
    z += level.bias[lo:hi]
    first_row = plan.n_inputs + level.start
    blocks = level.blocks
    for i in range(bisect_right(level.block_starts, lo) - 1, len(blocks)):
        block = blocks[i]
        if block.lo >= hi:
            break
        a, b = max(lo, block.lo), min(hi, block.hi)
        zb = z[a - lo:b - lo]
        if z_out is not None:
            z_out[level.start + a:level.start + b] = zb
        block.activation.fused(zb, acts[first_row + a:first_row + b], fprime[level.start + a:level.start + b])


def _forward_level(plan: Plan, level: Level, acts: np.ndarray, fprime: np.ndarray,
                   z_out: np.ndarray | None, threads: int) -> None:
    """One level: inline as one piece when small, else one piece per thread task."""
    work = level.forward_work * acts.shape[1]
    if level.narrow:
        _forward_narrow(level, acts, fprime, z_out)
        return
    if work < pool.PARALLEL_MIN_WORK or threads <= 1:
        _forward_inline(level, acts, fprime, z_out)
        return
    cuts = [(block.lo, block.hi) for block in level.blocks]
    pieces = _pieces(level.forward, cuts, acts)
    run_all((partial(_forward_piece, plan, level, p, acts, fprime, z_out) for p in pieces), work)


def _forward_inline(level: Level, acts: np.ndarray, fprime: np.ndarray, z_out: np.ndarray | None) -> None:
    """A whole level in one product and one fused call per activation run (slices made by the plan)."""
    if level.forward:
        z = _product(level.forward[0], acts)
    else:
        z = np.zeros((level.stop - level.start, acts.shape[1]), dtype=acts.dtype)
    z += level.bias
    for fused, rows, act_rows, node_rows in level.runs:
        zb = z[rows]
        if z_out is not None:
            z_out[node_rows] = zb
        fused(zb, acts[act_rows], fprime[node_rows])


def _forward_narrow(level: Level, acts: np.ndarray, fprime: np.ndarray, z_out: np.ndarray | None) -> None:
    """A narrow level: z into its f'(z) rows, then o = f(z) per activation run (f'(z) comes later)."""
    z = fprime[level.start:level.stop]
    if not level.forward:
        z.fill(0)
    elif level.forward[0].dense:
        np.matmul(level.forward[0].matrix, acts[level.forward[0].cols], out=z)
    else:
        z[...] = _product(level.forward[0], acts)
    z += level.bias
    if z_out is not None:
        z_out[level.start:level.stop] = z
    for forward_fn, rows, act_rows, _ in level.runs:
        acts[act_rows] = forward_fn(z[rows])


def _narrow_derivatives(plan: Plan, acts: np.ndarray, fprime: np.ndarray) -> None:
    """f'(z) of every narrow level's nodes, whose rows hold z: one call per activation."""
    for activation, rows, act_rows in plan.narrow_derivatives:
        fprime[rows] = activation.derivative(fprime[rows], acts[act_rows])


def _pass_shapes(plan: Plan, batch: int, n_outputs: int | None) -> list[tuple[int, ...]]:
    """Shapes of a pass's buffers: activations, deltas, and (output mode) f'(z)."""
    shapes: list[tuple[int, ...]] = [(plan.n_inputs + plan.n_nodes, batch)]
    if n_outputs is None:
        return shapes + [(plan.n_nodes, batch)]
    return shapes + [(plan.n_nodes, n_outputs, batch), (plan.n_nodes, batch)]


#: the sources' squares of the norm pass are kept for a whole slab when they take at most this or half the
#: slab budget, whichever is more (else a clipped call's slabs are narrowed to fit, and a norms-only call's
#: norm pass computes them in blocks, ``clipping.example_norms``)
SQUARES_MAX_BYTES = 32 << 20


def squares_limit() -> int:
    """The most bytes a slab's ``PassBuffers.squares`` may take (see ``SQUARES_MAX_BYTES``)."""
    return max(SQUARES_MAX_BYTES, slab_budget() // 2)


def squares_bytes(plan: Plan, batch: int) -> int:
    """Bytes of a slab's ``PassBuffers.squares`` for ``batch`` examples; 0 where they would pass ``squares_limit``."""
    nbytes = plan.n_nodes * batch * 8
    return (nbytes + 63) // 64 * 64 if nbytes <= squares_limit() else 0


def squares_rows(plan: Plan, rows: int) -> int:
    """The most slab rows (≤ ``rows``; a multiple of 8 when fewer) whose ``PassBuffers.squares`` fit ``squares_limit``."""
    fit = squares_limit() // (8 * max(1, plan.n_nodes))
    return rows if fit >= rows else max(1, fit - fit % 8 if fit >= 8 else fit)


def pass_bytes(plan: Plan, batch: int, n_outputs: int | None = None, squares: bool = False) -> int:
    """Bytes of workspace ``forward`` carves its buffers from for ``batch`` examples (with ``squares``: and
    the norm pass's ``PassBuffers.squares``)."""
    return (sum((int(np.prod(shape)) * plan.dtype.itemsize + 63) // 64 * 64
                for shape in _pass_shapes(plan, batch, n_outputs))
            + (squares_bytes(plan, batch) if squares else 0))


def pass_buffers(plan: Plan, x: np.ndarray, n_outputs: int | None = None,
                 workspace: np.ndarray | None = None, squares: bool = False) -> PassBuffers:
    """A pass's buffers for inputs ``x`` (B×I): inputs copied in, rows of nodes that reach no output at 0.

    The delta buffer is (N, B) for loss mode (``n_outputs`` None) and (N, K, B) for output mode.
    With ``workspace`` (a flat uint8 buffer of at least ``pass_bytes``) the buffers are carved
    from it instead of freshly allocated. With ``squares`` (where ``squares_bytes`` allows) the
    (N, B) float64 ``squares`` buffer comes too (loss mode), its rows of nodes that reach no output at 1;
    the forward pass fills the rest.
    """
    shapes = _pass_shapes(plan, x.shape[0], n_outputs)
    buffers, offset = [], 0
    for shape in shapes:
        if workspace is None:
            buffers.append(np.empty(shape, dtype=plan.dtype))
        else:
            array, offset = carve(workspace, offset, shape, plan.dtype)
            buffers.append(array)
    acts, deltas = buffers[0], buffers[1]
    fprime = deltas if n_outputs is None else buffers[2]
    fan = None
    if squares and n_outputs is None and squares_bytes(plan, x.shape[0]):
        shape, f64 = (plan.n_nodes, x.shape[0]), np.dtype(np.float64)
        if workspace is not None and offset + squares_bytes(plan, x.shape[0]) <= workspace.nbytes:
            fan = carve(workspace, offset, shape, f64)[0]
        else:
            fan = np.empty(shape, dtype=f64)
    acts[:plan.n_inputs] = x.T
    if plan.n_live < plan.n_nodes:                  # nodes that reach no output: never computed, held at 0
        acts[plan.n_inputs + plan.n_live:] = 0
        deltas[plan.n_live:] = 0
        fprime[plan.n_live:] = 0
        if fan is not None:
            fan[plan.n_live:] = 1
    return PassBuffers(acts, deltas, fprime, fan)


def forward(plan: Plan, x: np.ndarray, n_outputs: int | None = None, keep_z: bool = False,
            workspace: np.ndarray | None = None, squares: bool = False) -> tuple[PassBuffers, np.ndarray | None]:
    """Forward pass for inputs ``x`` (B×I) into ``pass_buffers``; with ``keep_z`` also every node's z (N×B).

    ``squares``: ``pass_buffers`` makes ``PassBuffers.squares`` (not filled here: ``kernel.NumpyKernel`` does)."""
    buffers = pass_buffers(plan, x, n_outputs, workspace, squares)
    z = np.empty((plan.n_nodes, x.shape[0]), dtype=plan.dtype) if keep_z else None
    threads = thread_count()
    for level in plan.levels:
        _forward_level(plan, level, buffers.acts, buffers.fprime, z, threads)
    _narrow_derivatives(plan, buffers.acts, buffers.fprime)
    return buffers, z


def backward(plan: Plan, buffers: PassBuffers, direct: np.ndarray | None) -> None:
    """Turn f'(z) in ``buffers.deltas`` into δ, level by level from the last (``_delta_product`` per piece).

    ``direct`` is ∂L/∂o of the outputs, (K, B), in loss mode. In output mode (a 3-D delta buffer)
    it is ignored: output k gets a direct term of 1 in its own column block.
    """
    flat = buffers.deltas.reshape(plan.n_nodes, -1)
    threads = thread_count()
    for level in reversed(plan.levels):
        work = level.backward_work * flat.shape[1]
        if work < pool.PARALLEL_MIN_WORK or threads <= 1:      # inline: the whole level as one piece
            whole = (0, level.stop - level.start, level.backward[0] if level.backward else None)
            _delta_product(level, whole, buffers, flat, direct)
            continue
        pieces = _pieces(level.backward, [(0, level.stop - level.start)], flat)
        run_all((partial(_delta_product, level, p, buffers, flat, direct) for p in pieces), work)


def _delta_product(level: Level, piece: Piece, buffers: PassBuffers, flat: np.ndarray,
                   direct: np.ndarray | None) -> None:
    """δ = f'(z) ⊙ (direct + W_out·δ[later rows]) for one piece of a level (rows ``piece``)."""
    deltas = buffers.deltas
    lo, hi, _ = piece
    g = _evaluate(piece, flat)
    for k, r in level.outputs:
        if lo <= r < hi:
            if deltas.ndim == 3:
                g.reshape(hi - lo, -1, deltas.shape[2])[r - lo, k] += 1
            else:
                assert direct is not None  # a 2-D delta buffer is loss mode's
                g[r - lo] += direct[k]
    rows = slice(level.start + lo, level.start + hi)
    if deltas.ndim == 3:
        np.multiply(g.reshape(hi - lo, -1, deltas.shape[2]), buffers.fprime[rows][:, None, :], out=deltas[rows])
    else:
        deltas[rows] *= g


def summed_edge_grads(plan: Plan, buffers: PassBuffers, out: np.ndarray, scatter: Any = None) -> None:
    """Fill ``out`` (E, file order) with Σ_b δ(v)·o[u] for every edge (loss mode without per_example).

    Dense levels are one BLAS product each (put in file order by ``dense.dense_grads``, with its
    ``scatter`` where given). The other edges come in groups of nodes with the same
    in-degree d: a chunk gathers its nodes' d source rows each (sized by bytes to stay in cache)
    and one δ row per node, broadcast over the node's d in-edges, instead of a δ copy per edge.
    """
    acts, deltas = buffers.acts, buffers.deltas
    dense_grads(plan.dense, acts, deltas, out, scatter)
    out[plan.dead_edges] = 0
    width = acts.shape[1]

    def group_grads(group: GradGroup, a: int, b: int) -> None:
        """The in-edges (u, v) of target nodes v ``a:b`` of one in-degree group."""
        u = group.src_rows[a:b]                                               # (v, d): each target's d sources
        o_u = np.take(acts, u.ravel(), axis=0, mode="clip").reshape(u.shape + (width,))
        delta_v = np.take(deltas, group.node_rows[a:b], axis=0, mode="clip")
        out[group.file_edges[a:b]] = np.einsum("vdb,vb->vd", o_u, delta_v)  # ∂P/∂w(u,v) = Σ_b δ(v)·o[u]

    tasks: list[Callable[[], None]] = []
    for group in plan.grad_groups:
        step = edge_chunk_size(group.src_rows.shape[1] * width * acts.itemsize)
        tasks.extend(partial(group_grads, group, a, b) for a, b in spans(group.node_rows.size, step))
    run_all(tasks, plan.sparse_edges.size * width)


def per_example_results(plan: Plan, buffers: PassBuffers, edges_out: np.ndarray, deltas_out: np.ndarray,
                        writer: Any = None) -> None:
    """Fill ``edges_out`` (B×E or B×K×E) with δ(v)·o[u] and ``deltas_out`` (B×N or B×K×N) with δ, file order.

    o and δ are turned example-major once; then each result row is two gathers along a row that
    stays in cache and one product, written contiguously in file order (no scattered columns): by
    ``writer`` (the ``numba_loops`` module, as ``kernel.example_writer`` chooses it) in one pass,
    or with None by numpy in blocks. The same bits either way: one product per value.
    """
    batch, n_edges = edges_out.shape[0], edges_out.shape[-1]
    acts_t = _example_major(buffers.acts, writer)                                    # (B, I+N)
    deltas_t = _example_major(buffers.deltas, writer)                                # (B, N) or (B, K, N)
    if writer is not None:                                        # one pass over each result, rows split by thread
        flat_deltas, flat_out = deltas_t.reshape(-1, deltas_t.shape[-1]), deltas_out.reshape(-1, deltas_out.shape[-1])
        tasks = [lambda r=r: writer.take_rows(r[0], r[1], flat_deltas, plan.node_row, flat_out)
                 for r in thread_spans(flat_out.shape[0])]
        if n_edges:
            rows = writer.output_rows if edges_out.ndim == 3 else writer.example_rows
            tasks += [lambda r=r: rows(r[0], r[1], plan.file_src, plan.file_dst, acts_t, deltas_t, edges_out)
                      for r in thread_spans(batch)]
        run_all(tasks, edges_out.size + deltas_out.size)
        return
    np.take(deltas_t, plan.node_row, axis=-1, out=deltas_out, mode="clip")
    if n_edges == 0:
        return
    per_edge = edges_out.shape[1] if edges_out.ndim == 3 else 1                   # K in output mode
    cells = max(1, edge_chunk_size(edges_out.itemsize))                          # elements of one chunk
    if per_edge * n_edges <= cells:
        row_step, edge_step = cells // (per_edge * n_edges), n_edges
    else:
        row_step, edge_step = 1, max(1, cells // per_edge)
    tasks = [partial(_example_grads, plan, acts_t, deltas_t, edges_out, r, e)
             for r in spans(batch, row_step) for e in spans(n_edges, edge_step)]
    run_all(tasks, edges_out.size)


#: rows per tile of the example-major transpose (written as contiguous runs of this many)
TRANSPOSE_ROWS = 256


def _example_major(a: np.ndarray, writer: Any = None) -> np.ndarray:
    """``a`` (rows, [K,] B) as a contiguous (B, [K,] rows) copy, transposed in cache-sized tiles.

    numpy's own copy of a transposed view reads with a stride of a whole row per element; a tile of
    ``TRANSPOSE_ROWS`` rows × a few examples is read once from cache and written as contiguous runs.
    With the numba ``writer`` its ``example_major_rows`` does the same in one pass per row range.
    """
    out = np.empty(a.shape[::-1], dtype=a.dtype)
    if writer is not None:
        rows = a.shape[0]
        src, dst = a.reshape(rows, -1, a.shape[-1]), out.reshape(a.shape[-1], -1, rows)
        run_all([partial(writer.example_major_rows, r[0], r[1], src, dst) for r in thread_spans(rows)], a.size)
        return out
    middle = a[0, ..., 0].size if a.shape[0] and a.shape[-1] else 1       # K, or 1
    cols = max(8, 16384 // (TRANSPOSE_ROWS * middle))
    axes = tuple(range(a.ndim))[::-1]

    def tile(r: tuple[int, int]) -> None:
        for c0, c1 in spans(a.shape[-1], cols):
            out[c0:c1, ..., r[0]:r[1]] = a[r[0]:r[1], ..., c0:c1].transpose(axes)

    run_all((partial(tile, r) for r in spans(a.shape[0], TRANSPOSE_ROWS)), a.size)
    return out


def _example_grads(plan: Plan, acts_t: np.ndarray, deltas_t: np.ndarray, out: np.ndarray,
                   rows: tuple[int, int], edges: tuple[int, int]) -> None:
    """Rows × edges block of the per-example gradients: out = δ(v) · o[u] of each edge (u, v)."""
    (r0, r1), (e0, e1) = rows, edges
    o_u = np.take(acts_t[r0:r1], plan.file_src[e0:e1], axis=1, mode="clip")         # (r, e)
    dest = out[r0:r1, ..., e0:e1]
    np.take(deltas_t[r0:r1], plan.file_dst[e0:e1], axis=-1, out=dest, mode="clip")  # δ(v): (r, e) or (r, K, e)
    dest *= o_u if dest.ndim == 2 else o_u[:, None, :]                           # ∂P/∂w(u,v) = δ(v)·o[u]


def plan_node_values(plan: Plan, x: np.ndarray) -> NodeValues:
    """z, o and f'(z) of every node for inputs ``x``, in file order (B×N, B×(I+N), B×N)."""
    buffers, z = forward(plan, x, keep_z=True)
    assert z is not None  # keep_z
    n_in = plan.n_inputs
    o = np.concatenate([buffers.acts[:n_in], buffers.acts[n_in + plan.node_row]]).T
    return NodeValues(z[plan.node_row].T.copy(), o.copy(), buffers.fprime[plan.node_row].T.copy())

