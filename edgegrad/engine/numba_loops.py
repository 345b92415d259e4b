"""The numba loops of the numba kernel: jitted, imported only by ``numba_kernel`` (lazily: numba may be missing).

``numba_kernel`` is the driver (pure Python: which rows, which threads); this module is the numba
code it calls. Rows are node-major like the numpy kernel's buffers (one row of B examples per
vertex). Each loop walks a range of plan rows in a fixed order, and every sum runs in a fixed order
(edges as the plan sorts them; dot products SIMD lanes whose layout depends only on the length), so
results are bit-identical run to run and do not depend on how rows are split between threads. The
loops release the GIL; ``numba_kernel`` runs a wide level's row chunks on the engine's thread pool.
Edges are (u, v): u the source, v the target, as in the docs.

Activations and dot products are ``rowact``'s (shared with the population kernel); activation codes are
the positions in ``model.activations.ACTIVATION_NAMES`` (``numba_kernel`` checks ``ORDER`` at import).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rowact import ORDER, activate, dot
from .rowmath import KERNEL_OPTIONS, jit_kernel

__all__ = ["forward_rows", "backward_rows", "input_grads", "example_rows", "output_rows", "take_rows", "example_major_rows",
           "source_squares", "example_squares", "scale_rows", "put_cells",
           "ORDER"]


def _forward_rows(r0: int, r1: int, n_in: int, in_ptr: np.ndarray, in_src: np.ndarray, in_w: np.ndarray,
                  bias: np.ndarray, codes: np.ndarray, acts: np.ndarray, fprime: np.ndarray, fan: np.ndarray) -> None:
    """Node rows v in [r0, r1) in order: z = Σ w·o[u] over in-edges (u, v) (plan order) + bias, then o = f(z), f'(z).

    With ``fan`` (N×B float64; 0×0 for none) also fan[v] = 1 + Σ o[u]² over the same in-edges in the
    same order, in float64: the per-example norms' source sums (``source_squares``), while o[u] is read anyway.
    """
    width = acts.shape[1]
    squares = fan.shape[0] > 0
    z = np.empty(width, dtype=acts.dtype)
    sq = np.empty(width if squares else 0, dtype=np.float64)
    tmp = np.empty((4, width), dtype=np.float64)
    for v in range(r0, r1):
        if width == 1:                         # one example: scalar sums, no row loops to set up per edge
            s = acts.dtype.type(0.0)
            q = 1.0
            for j in range(in_ptr[v], in_ptr[v + 1]):
                x = acts[in_src[j], 0]
                s += in_w[j] * x
                if squares:
                    q += np.float64(x) * np.float64(x)
            z[0] = s + bias[v]
            if squares:
                fan[v, 0] = q
        elif squares:
            z[:] = 0.0
            sq[:] = 1.0
            for j in range(in_ptr[v], in_ptr[v + 1]):
                w = in_w[j]
                src = acts[in_src[j]]
                for b in range(width):
                    x = src[b]
                    z[b] += w * x
                    x64 = np.float64(x)
                    sq[b] += x64 * x64
            bv = bias[v]
            for b in range(width):
                z[b] += bv
            fan[v] = sq
        else:
            z[:] = 0.0
            for j in range(in_ptr[v], in_ptr[v + 1]):
                w = in_w[j]
                src = acts[in_src[j]]
                for b in range(width):
                    z[b] += w * src[b]
            bv = bias[v]
            for b in range(width):
                z[b] += bv
        activate(codes[v], z, acts[n_in + v], fprime[v], tmp, True)


def _backward_rows(r0: int, r1: int, n_in: int, out_ptr: np.ndarray, out_dst: np.ndarray, out_w: np.ndarray,
                   direct_ptr: np.ndarray, direct_k: np.ndarray, direct: np.ndarray,
                   acts: np.ndarray, deltas: np.ndarray, grads: np.ndarray, delta_sums: np.ndarray,
                   fused: bool) -> None:
    """Node rows u in [r0, r1) from the last: δ(u) = f'(z)·(direct + Σ w·δ(v)) over out-edges (u, v), with Σ_b.

    ``deltas`` holds f'(z) on entry (later rows already δ). With ``fused`` out-edge j's gradient
    Σ_b δ(v)·o[u] goes to ``grads[j]`` (out-edge order: written in sequence, not scattered) in the same
    pass over δ(v); ``delta_sums[u]`` gets Σ_b δ(u).
    """
    width = deltas.shape[1]
    if width == 1:
        _backward_one(r0, r1, n_in, out_ptr, out_dst, out_w, direct_ptr, direct_k, direct, acts, deltas, grads,
                      delta_sums, fused)
        return
    g = np.empty(width, dtype=deltas.dtype)
    for u in range(r1 - 1, r0 - 1, -1):
        g[:] = 0.0
        o_u = acts[n_in + u]
        for j in range(out_ptr[n_in + u], out_ptr[n_in + u + 1]):
            delta_v = deltas[out_dst[j]]       # edge j = (u, v), v = out_dst[j]
            w = out_w[j]
            for b in range(width):
                g[b] += w * delta_v[b]
            if fused:                          # δ(v) is in L1 now: its dot with o[u] costs no memory traffic
                grads[j] = dot(delta_v, o_u)  # ∂P/∂w(u,v) = Σ_b δ(v)·o[u]
        for i in range(direct_ptr[u], direct_ptr[u + 1]):
            row = direct[direct_k[i]]
            for b in range(width):
                g[b] += row[b]
        d = deltas[u]
        s = 0.0
        for b in range(width):
            d[b] *= g[b]
            s += d[b]
        delta_sums[u] = s


@njit(**KERNEL_OPTIONS)
def _backward_one(r0: int, r1: int, n_in: int, out_ptr: np.ndarray, out_dst: np.ndarray, out_w: np.ndarray,
                  direct_ptr: np.ndarray, direct_k: np.ndarray, direct: np.ndarray, acts: np.ndarray,
                  deltas: np.ndarray, grads: np.ndarray, delta_sums: np.ndarray, fused: bool) -> None:
    """``_backward_rows`` for one example (B = 1): scalars instead of rows."""
    zero = deltas.dtype.type(0.0)
    for u in range(r1 - 1, r0 - 1, -1):
        g = zero
        o_u = acts[n_in + u, 0]
        for j in range(out_ptr[n_in + u], out_ptr[n_in + u + 1]):
            delta_v = deltas[out_dst[j], 0]    # edge j = (u, v), v = out_dst[j]
            g += out_w[j] * delta_v
            if fused:
                grads[j] = delta_v * o_u       # ∂P/∂w(u,v) = δ(v)·o[u]
        for i in range(direct_ptr[u], direct_ptr[u + 1]):
            g += direct[direct_k[i], 0]
        d = deltas[u, 0] * g
        deltas[u, 0] = d
        delta_sums[u] = d


def _input_grads(u0: int, u1: int, out_ptr: np.ndarray, out_dst: np.ndarray, acts: np.ndarray,
                 deltas: np.ndarray, grads: np.ndarray) -> None:
    """Σ_b δ(v)·o[u] of the out-edges (u, v) of input rows u in [u0, u1), into ``grads`` in out-edge order."""
    one = acts.shape[1] == 1
    for u in range(u0, u1):
        o_u = acts[u]
        for j in range(out_ptr[u], out_ptr[u + 1]):                       # edge j = (u, v), v = out_dst[j]
            grads[j] = deltas[out_dst[j], 0] * o_u[0] if one else dot(deltas[out_dst[j]], o_u)  # ∂P/∂w(u,v)


def _example_rows(r0: int, r1: int, u: np.ndarray, v: np.ndarray, acts_t: np.ndarray, deltas_t: np.ndarray,
                  out: np.ndarray) -> None:
    """Per-example rows [r0, r1) of B×E: out[r, e] = δ[r, v[e]]·o[r, u[e]] (edge e = (u, v)), each row written once."""
    for r in range(r0, r1):
        o, delta, row = acts_t[r], deltas_t[r], out[r]
        for e in range(u.shape[0]):
            row[e] = delta[v[e]] * o[u[e]]     # ∂P/∂w(u,v) = δ(v)·o[u]


def _output_rows(r0: int, r1: int, u: np.ndarray, v: np.ndarray, acts_t: np.ndarray, deltas_t: np.ndarray,
                 out: np.ndarray) -> None:
    """Output-mode rows [r0, r1) of B×K×E: out[r, k, e] = δ_k[r, v[e]]·o[r, u[e]] (edge e = (u, v)), written once."""
    for r in range(r0, r1):
        o = acts_t[r]
        for k in range(out.shape[1]):
            delta, row = deltas_t[r, k], out[r, k]
            for e in range(u.shape[0]):
                row[e] = delta[v[e]] * o[u[e]]  # ∂P/∂w(u,v) = δ_k(v)·o[u]


def _take_rows(r0: int, r1: int, src: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """out[r] = src[r, index] for rows [r0, r1) of two 2-D arrays (numpy's ``take`` along the last axis, in one pass)."""
    for r in range(r0, r1):
        s, row = src[r], out[r]
        for j in range(index.shape[0]):
            row[j] = s[index[j]]


def _put_cells(c0: int, c1: int, src: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """out[index[c]] = src[c] for cells c in [c0, c1): a scatter reading ``src`` in order (``dense.dense_grads``:
    the dense blocks into file order; numpy's gather of the same permutation costs twice as long here)."""
    for c in range(c0, c1):
        out[index[c]] = src[c]


def _example_major_rows(r0: int, r1: int, src: np.ndarray, out: np.ndarray) -> None:
    """out[b, m, r] = src[r, m, b] for rows [r0, r1): (R, M, B) into (B, M, R), 16 rows at a time so that
    each write fills whole cache lines while the rows' B values stay in cache."""
    for start in range(r0, r1, 16):
        stop = min(start + 16, r1)
        for m in range(src.shape[1]):
            for b in range(src.shape[2]):
                target = out[b, m]
                for r in range(start, stop):
                    target[r] = src[r, m, b]


def _source_squares(r0: int, r1: int, in_ptr: np.ndarray, in_src: np.ndarray, acts: np.ndarray,
                    fan: np.ndarray) -> None:
    """Node rows v in [r0, r1): fan[v] += Σ o[u]² over in-edges (u, v), in float64 (per-example norms)."""
    width = acts.shape[1]
    for v in range(r0, r1):
        row = fan[v]
        for j in range(in_ptr[v], in_ptr[v + 1]):
            src = acts[in_src[j]]
            for b in range(width):
                x = np.float64(src[b])
                row[b] += x * x


def _example_squares(r0: int, r1: int, deltas: np.ndarray, fan: np.ndarray, out: np.ndarray) -> None:
    """out[b] = Σ_v δ[v, b]² · fan[v, b] over node rows v in [0, N), row after row, for columns b in [r0, r1)
    (float64): each example's squared gradient norm, the same sum whatever the column split."""
    acc = np.zeros(r1 - r0)
    for v in range(deltas.shape[0]):
        d, f = deltas[v, r0:r1], fan[v, r0:r1]
        for b in range(r1 - r0):
            x = np.float64(d[b])
            acc[b] += x * x * f[b]
    out[r0:r1] = acc


def _scale_rows(r0: int, r1: int, deltas: np.ndarray, factors: np.ndarray, sums: np.ndarray) -> None:
    """Rows v in [r0, r1): δ[v, b] *= factors[b] in place (each example's clip factor), and sums[v] = Σ_b δ[v, b] after."""
    for v in range(r0, r1):
        d = deltas[v]
        s = 0.0
        for b in range(d.shape[0]):
            d[b] *= factors[b]
            s += d[b]
        sums[v] = s


forward_rows = jit_kernel(_forward_rows)
backward_rows = jit_kernel(_backward_rows)
input_grads = jit_kernel(_input_grads)
example_rows = jit_kernel(_example_rows)
output_rows = jit_kernel(_output_rows)
take_rows = jit_kernel(_take_rows)
put_cells = jit_kernel(_put_cells)
example_major_rows = jit_kernel(_example_major_rows)
source_squares = jit_kernel(_source_squares)
example_squares = jit_kernel(_example_squares)
scale_rows = jit_kernel(_scale_rows)
