"""The numba loops of the numba kernel: jitted, imported only by ``numba_kernel`` (lazily: numba may be missing).

``numba_kernel`` is the driver (pure Python: which rows, which threads); this module is the numba
code it calls. Rows are node-major like the numpy kernel's buffers (one row of B examples per
vertex). Each loop walks a range of plan rows in a fixed order, and every sum runs in a fixed order
(edges as the plan sorts them; dot products SIMD lanes whose layout depends only on the length), so
results are bit-identical run to run and do not depend on how rows are split between threads. The
loops release the GIL; ``numba_kernel`` runs a wide level's row chunks on the engine's thread pool.
Edges are (u, v): u the source, v the target, as in the docs.

Activation codes are the positions in ``model.activations.ACTIVATION_NAMES`` (``numba_kernel`` checks the
order at import). Every activation is evaluated in float64 and stored in the buffers' dtype
(``np.float64(x)``, since numba types ``float()`` of a float32 as float32).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rowmath import (
    EXPM1_SERIES,
    KERNEL_OPTIONS,
    exp_row,
    expm1_series,
    jit_kernel,
    log1p_unit,
    sigmoid_row,
    sincos_row,
    tanh_row,
)

__all__ = ["forward_rows", "backward_rows", "input_grads", "example_rows", "output_rows", "take_rows", "example_major_rows",
           "source_squares", "ORDER"]

#: the activation names in code order, as these kernels number them
ORDER = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu", "sin",
         "gauss", "abs")

_GAUSS_CLIP = 40.0
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


@njit(inline="always")
def _ndtr(z: float) -> float:
    """The standard normal CDF, as cephes computes it (erf near 0, erfc in the tails)."""
    t = z * _SQRT_HALF
    a = abs(t)
    if a < _SQRT_HALF:
        return 0.5 + 0.5 * math.erf(t)
    y = 0.5 * math.erfc(a)
    return 1.0 - y if t > 0.0 else y


@njit(inline="always")
def _clip(z: float) -> float:
    if z > _GAUSS_CLIP:
        return _GAUSS_CLIP
    if z < -_GAUSS_CLIP:
        return -_GAUSS_CLIP
    return z                                   # NaN stays NaN


@njit(**KERNEL_OPTIONS)
def _activate(code: int, z: np.ndarray, o: np.ndarray, d: np.ndarray, tmp: np.ndarray) -> None:
    """o = f(z) and d = f'(z) over one row, for the activation numbered ``code`` (NaN in, NaN out).

    ``tmp`` is 4 float64 rows of scratch: exp, tanh, sigmoid, sin and cos run over the whole row in
    ``rowmath``'s SIMD loops, then one loop derives o and d from them.
    """
    n = z.shape[0]
    f, scratch = tmp[0], tmp[1:]
    if code == 0:                                                  # identity
        for b in range(n):
            o[b] = z[b]
            d[b] = 1.0
    elif code == 1:                                                # sigmoid
        sigmoid_row(z, f, scratch)
        for b in range(n):
            s = f[b]
            o[b] = s
            d[b] = s * (1.0 - s)
    elif code == 2:                                                # tanh
        tanh_row(z, f, scratch)
        for b in range(n):
            t = f[b]
            o[b] = t
            d[b] = 1.0 - t * t
    elif code == 3:                                                # relu
        for b in range(n):
            x = z[b]
            o[b] = 0.0 if x <= 0.0 else x
            d[b] = 1.0 if x > 0.0 else 0.0
    elif code == 4:                                                # leaky_relu
        for b in range(n):
            x = z[b]
            s = 1.0 if x > 0.0 else 0.01
            o[b] = x * s
            d[b] = s
    elif code == 5:                                                # elu
        exp_row(z, f, scratch)
        for b in range(n):
            x = np.float64(z[b])
            e = f[b]
            small = expm1_series(x) if x > -EXPM1_SERIES else e - 1.0
            o[b] = x if x > 0.0 else small
            d[b] = 1.0 if x > 0.0 else e
    elif code == 6:                                                # softplus
        negative = tmp[3]
        for b in range(n):
            negative[b] = -abs(np.float64(z[b]))
        exp_row(negative[:n], f, scratch)
        for b in range(n):
            x = np.float64(z[b])
            e = f[b]
            o[b] = log1p_unit(e) + (x if x > 0.0 else 0.0)
            r = 1.0 / (1.0 + e)
            d[b] = e * r if x < 0.0 else r
    elif code == 7:                                                # gelu (erf form)
        for b in range(n):
            x = np.float64(z[b])
            c = _ndtr(x)
            xc = _clip(x)
            o[b] = x * c
            d[b] = c + xc * (math.exp(-0.5 * xc * xc) * _INV_SQRT_2PI)
    elif code == 8:                                                # silu
        sigmoid_row(z, f, scratch)
        for b in range(n):
            x = np.float64(z[b])
            s = f[b]
            o[b] = x * s
            d[b] = s * (1.0 + x * (1.0 - s))
    elif code == 9:                                                # sin
        sincos_row(z, f, tmp[1])
        for b in range(n):
            o[b] = f[b]
            d[b] = tmp[1, b]
    elif code == 10:                                               # gauss
        negative = tmp[3]
        for b in range(n):
            xc = _clip(np.float64(z[b]))
            negative[b] = -(xc * xc)
        exp_row(negative[:n], f, scratch)
        for b in range(n):
            g = f[b]
            o[b] = g
            d[b] = -2.0 * _clip(np.float64(z[b])) * g
    else:                                                          # abs
        for b in range(n):
            x = z[b]
            o[b] = abs(x)
            d[b] = 1.0 if x > 0.0 else (-1.0 if x < 0.0 else x * 0.0)


@njit(nogil=True, boundscheck=False, fastmath={"reassoc"})
def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """Σ x·y, vectorised: ``reassoc`` lets LLVM keep SIMD lanes of partial sums (their layout depends only on
    the length and the CPU, so a sum is the same every run and on every thread; no other fast-math flag,
    so NaN and inf propagate as usual)."""
    s = 0.0
    for b in range(x.shape[0]):
        s += x[b] * y[b]
    return s


def _forward_rows(r0: int, r1: int, n_in: int, in_ptr: np.ndarray, in_src: np.ndarray, in_w: np.ndarray,
                  bias: np.ndarray, codes: np.ndarray, acts: np.ndarray, fprime: np.ndarray) -> None:
    """Node rows v in [r0, r1) in order: z = Σ w·o[u] over in-edges (u, v) (plan order) + bias, then o = f(z), f'(z)."""
    width = acts.shape[1]
    z = np.empty(width, dtype=acts.dtype)
    tmp = np.empty((4, width), dtype=np.float64)
    for v in range(r0, r1):
        if width == 1:                         # one example: scalar sums, no row loops to set up per edge
            s = acts.dtype.type(0.0)
            for j in range(in_ptr[v], in_ptr[v + 1]):
                s += in_w[j] * acts[in_src[j], 0]
            z[0] = s + bias[v]
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
        _activate(codes[v], z, acts[n_in + v], fprime[v], tmp)


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
                grads[j] = _dot(delta_v, o_u)  # ∂P/∂w(u,v) = Σ_b δ(v)·o[u]
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
            grads[j] = deltas[out_dst[j], 0] * o_u[0] if one else _dot(deltas[out_dst[j]], o_u)  # ∂P/∂w(u,v)


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


forward_rows = jit_kernel(_forward_rows)
backward_rows = jit_kernel(_backward_rows)
input_grads = jit_kernel(_input_grads)
example_rows = jit_kernel(_example_rows)
output_rows = jit_kernel(_output_rows)
take_rows = jit_kernel(_take_rows)
example_major_rows = jit_kernel(_example_major_rows)
source_squares = jit_kernel(_source_squares)
