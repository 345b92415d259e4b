"""The numba kernel of a population: every network of a packed slab in one compiled, parallel call.

Networks are taken one at a time (blocks of consecutive networks per thread, ``prange``), each in row
chunks of its own (``population_results.row_chunks``: 256 rows, fewer for a big network), so one small network's whole working set (its activations,
f'(z) and δ rows for one chunk) stays in L2 while it runs forward, δ-backward and its gradient
gathers. Rows are node-major like the single-network kernels' buffers; a network's nodes are in its
plan order (live nodes by level, activation, file position; dead ones last, held at 0) and every sum
runs in a fixed order that depends only on the network itself (its edges in plan order, its chunk
boundaries at multiples of its own chunk, dot products' SIMD lanes by length), so a
network's bits never depend on which networks share the call or on the thread count.

Modes: ``FORWARD`` (outputs only: no derivative is computed), ``OUTPUTS`` (output mode, B×K×E),
``SUMS`` (loss mode, summed over the rows) and ``EXAMPLES`` (loss mode, per example). Losses are
computed in float64 as ``losses`` does. A network whose results are not all finite, or whose
outputs leave [0, 1] under bce, gets a non-zero ``status``: the caller names it.

Activations are ``rowact.activate`` (the single-network compiled kernel's formulas, over ``rowmath``'s row
functions); ``ORDER`` is its activation numbering (``population`` checks it against the model's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit, prange

from .population_results import EXAMPLES, FORWARD, OUTPUTS, SUMS
from .rowact import ORDER, activate, dot
from .rowmath import KERNEL_OPTIONS

__all__ = ["FORWARD", "OUTPUTS", "SUMS", "EXAMPLES", "LOSS_CODES", "ORDER", "run_population"]

#: the losses as the kernel numbers them
LOSS_CODES = {"mse": 0, "bce": 1, "softmax_ce": 2}

_LOG_FLOOR = -100.0
_OPTIONS = KERNEL_OPTIONS


@njit(**_OPTIONS)
def _clamped_log(x: float) -> tuple[float, float]:
    """ln x clamped below at -100, and its derivative (0 where the clamp holds), as ``losses`` computes them."""
    if x <= 0.0:
        return _LOG_FLOOR, 0.0
    v = math.log(x)
    if v > _LOG_FLOOR:
        return v, 1.0 / x
    return _LOG_FLOOR, 0.0


@njit(**_OPTIONS)
def _loss_rows(loss: int, scale: float, y: np.ndarray, t: np.ndarray, direct: np.ndarray) -> tuple[float, bool]:
    """The loss terms of a chunk (``y``: K×w outputs, ``t``: w×K targets) and ∂L/∂y into ``direct`` (K×w).

    Returns (Σ terms, ok); ok is False where bce meets an output outside [0, 1].
    """
    k_out, w = y.shape
    total = 0.0
    root = math.sqrt(scale)
    if loss == 0:                                                  # mse
        for b in range(w):
            for k in range(k_out):
                diff = np.float64(y[k, b]) - t[b, k]
                scaled = diff * root
                total += scaled * scaled
                direct[k, b] = (2.0 * scale) * diff
    elif loss == 1:                                                # bce
        for b in range(w):
            for k in range(k_out):
                yv = np.float64(y[k, b])
                if not (yv >= 0.0 and yv <= 1.0):
                    return total, False
                tv = t[b, k]
                log_y, dlog_y = _clamped_log(yv)
                log_1y, dlog_1y = _clamped_log(1.0 - yv)
                total -= scale * (tv * log_y + (1.0 - tv) * log_1y)
                direct[k, b] = -scale * (tv * dlog_y - (1.0 - tv) * dlog_1y)
    else:                                                          # softmax_ce
        for b in range(w):
            top = -np.inf
            for k in range(k_out):
                top = max(top, np.float64(y[k, b]))
            s = 0.0
            t_sum = 0.0
            for k in range(k_out):
                s += math.exp(np.float64(y[k, b]) - top)
                t_sum += t[b, k]
            lse = math.log(s)
            for k in range(k_out):
                shifted = np.float64(y[k, b]) - top
                total -= (scale * t[b, k]) * (shifted - lse)
                direct[k, b] = scale * (math.exp(shifted) / s * t_sum - t[b, k])
    return total, True


@njit(**_OPTIONS)
def _forward(n_in: int, n_live: int, n_nodes: int, w: int, node0: int, in_ptr: np.ndarray, in_src: np.ndarray,
             in_w: np.ndarray, bias: np.ndarray, codes: np.ndarray, acts: np.ndarray, fprime: np.ndarray,
             z: np.ndarray, tmp: np.ndarray, slope: bool) -> None:
    """Live node rows in plan order: z = Σ w·o[src] (in-edges in plan order) + bias, o = f(z) (and f'(z))."""
    zw = z[:w]
    for v in range(n_live):
        g = node0 + v
        zw[:] = 0.0
        for j in range(in_ptr[g], in_ptr[g + 1]):
            wt = in_w[j]
            src = acts[in_src[j]]
            for b in range(w):
                zw[b] += wt * src[b]
        bv = bias[g]
        for b in range(w):
            zw[b] += bv
        activate(codes[g], zw, acts[n_in + v, :w], fprime[v, :w], tmp, slope)
    for v in range(n_live, n_nodes):                               # dead nodes: held at 0
        acts[n_in + v, :w] = 0.0


@njit(**_OPTIONS)
def _backward(n_in: int, n_live: int, n_nodes: int, w: int, node0: int, vert0: int, out_ptr: np.ndarray,
              out_dst: np.ndarray, out_w: np.ndarray, out_k: np.ndarray, direct: np.ndarray, only_k: int,
              fprime: np.ndarray, deltas: np.ndarray, g: np.ndarray) -> None:
    """δ = f'(z)·(Σ w·δ[dst] over out-edges + ∂L/∂o) from the last live row; dead rows 0.

    ``only_k`` ≥ 0: output mode for output ``only_k`` (∂y_k/∂o = 1 at its node), else ``direct`` (K×w).
    """
    gw = g[:w]
    for v in range(n_live, n_nodes):
        deltas[v, :w] = 0.0
    for v in range(n_live - 1, -1, -1):
        gw[:] = 0.0
        u = vert0 + n_in + v
        for j in range(out_ptr[u], out_ptr[u + 1]):
            wt = out_w[j]
            dc = deltas[out_dst[j]]
            for b in range(w):
                gw[b] += wt * dc[b]
        k = out_k[node0 + v]
        if k >= 0:
            if only_k < 0:
                for b in range(w):
                    gw[b] += direct[k, b]
            elif k == only_k:
                for b in range(w):
                    gw[b] += 1.0
        d, fp = deltas[v], fprime[v]
        for b in range(w):
            d[b] = fp[b] * gw[b]


@njit(**_OPTIONS)
def _norms(n_live: int, w: int, node0: int, in_ptr: np.ndarray, in_src: np.ndarray, acts: np.ndarray,
           deltas: np.ndarray, scale: float, clip: float, fan: np.ndarray, squares: np.ndarray, factors: np.ndarray,
           out: np.ndarray) -> None:
    """‖r_b‖ = sqrt(Σ_v δ_b(v)²·(1 + Σ_{(u,v)} o_b(u)²)) / scale of each row b (δ carry the loss's factor
    ``scale``) into ``out``; ``clip`` > 0: each row's δ scaled by min(1, clip / ‖r_b‖) (a factor in δ's
    dtype, as ``api`` scales them) in place."""
    squares[:w] = 0.0
    for v in range(n_live):                                        # node rows in plan order, row after row
        g = node0 + v
        fan[:w] = 1.0
        for j in range(in_ptr[g], in_ptr[g + 1]):
            src = acts[in_src[j]]
            for b in range(w):
                o = np.float64(src[b])
                fan[b] += o * o
        d = deltas[v]
        for b in range(w):
            dv = np.float64(d[b])
            squares[b] += dv * dv * fan[b]
    for b in range(w):
        squares[b] = math.sqrt(squares[b]) / scale                # the norm, float64
        out[b] = squares[b]
    if clip > 0.0:
        for b in range(w):
            factors[b] = min(1.0, clip / squares[b])              # a norm of 0: clip / 0 = inf, factor 1
        for v in range(n_live):
            d = deltas[v]
            for b in range(w):
                d[b] = d[b] * factors[b]


@njit(**_OPTIONS)
def _all_finite(values: np.ndarray) -> bool:
    for i in range(values.shape[0]):
        if not np.isfinite(values[i]):
            return False
    return True


def _run_population(mode: int, loss: int, mean: bool, blocks: np.ndarray, n_in: np.ndarray, n_nodes: np.ndarray,
                    n_live: np.ndarray, n_out: np.ndarray, n_edges: np.ndarray, node_off: np.ndarray,
                    vert_off: np.ndarray, edge_off: np.ndarray, out_off: np.ndarray, in_ptr: np.ndarray,
                    in_src: np.ndarray, in_w: np.ndarray, bias: np.ndarray, codes: np.ndarray, out_ptr: np.ndarray,
                    out_dst: np.ndarray, out_w: np.ndarray, out_k: np.ndarray, out_rows: np.ndarray,
                    f_src: np.ndarray, f_dst: np.ndarray, node_row: np.ndarray, batch: np.ndarray,
                    mean_rows: np.ndarray, chunk: np.ndarray,
                    x: np.ndarray, x_off: np.ndarray, t: np.ndarray, t_off: np.ndarray, res_out: np.ndarray,
                    res_out_off: np.ndarray, res_edges: np.ndarray, res_edge_off: np.ndarray,
                    res_deltas: np.ndarray, res_delta_off: np.ndarray, res_loss: np.ndarray,
                    status: np.ndarray, want_norms: bool, clip: float, res_norms: np.ndarray,
                    res_norm_off: np.ndarray) -> None:
    """Networks [blocks[i], blocks[i+1]) of each block on a thread: forward, loss, δ and gradients per chunk.

    ``mean_rows``: the rows ``reduction="mean"`` divides by, per network (``batch``, or a whole batch of which
    these rows are a shard). ``want_norms`` (loss mode): each example's gradient norm into ``res_norms``; ``clip`` > 0: each example's
    δ scaled by min(1, clip / norm) before the gathers (``clipping``'s definitions).
    """
    slope = mode != FORWARD
    for blk in prange(blocks.shape[0] - 1):
        p0, p1 = blocks[blk], blocks[blk + 1]
        v_max, n_max, k_max, c_max = 1, 1, 1, 1
        for p in range(p0, p1):
            v_max = max(v_max, n_in[p] + n_nodes[p])
            n_max = max(n_max, n_nodes[p])
            k_max = max(k_max, n_out[p])
            c_max = max(c_max, chunk[p])
        acts = np.empty((v_max, c_max), dtype=res_out.dtype)
        fprime = np.empty((n_max, c_max), dtype=res_out.dtype)
        deltas = np.empty((n_max, c_max), dtype=res_out.dtype)
        direct = np.empty((k_max, c_max), dtype=res_out.dtype)
        direct64 = np.empty((k_max, c_max), dtype=np.float64)
        z = np.empty(c_max, dtype=res_out.dtype)
        g = np.empty(c_max, dtype=res_out.dtype)
        tmp = np.empty((4, c_max), dtype=np.float64)
        fan = np.empty(c_max, dtype=np.float64)
        squares = np.empty(c_max, dtype=np.float64)
        for p in range(p0, p1):
            ni, nn, nl, k_out, ne = n_in[p], n_nodes[p], n_live[p], n_out[p], n_edges[p]
            node0, vert0, edge0, o0 = node_off[p], vert_off[p], edge_off[p], out_off[p]
            rows = batch[p]
            xs, ts = x[x_off[p]:x_off[p] + rows * ni], t[t_off[p]:t_off[p] + rows * k_out]
            outs = res_out[res_out_off[p]:res_out_off[p] + rows * k_out]
            count = k_out if loss != 2 else 1
            scale = 1.0 / (count * mean_rows[p]) if mean else 1.0
            total = 0.0
            ok = True
            for r0 in range(0, rows, chunk[p]):
                w = min(chunk[p], rows - r0)
                for i in range(ni):
                    for b in range(w):
                        acts[i, b] = xs[(r0 + b) * ni + i]
                _forward(ni, nl, nn, w, node0, in_ptr, in_src, in_w, bias, codes, acts, fprime, z, tmp, slope)
                for k in range(k_out):
                    src = acts[ni + out_rows[o0 + k]]
                    for b in range(w):
                        outs[(r0 + b) * k_out + k] = src[b]
                if mode == FORWARD:
                    continue
                if mode == OUTPUTS:                                # output mode: one δ pass per output
                    eg = res_edges[res_edge_off[p]:]
                    dg = res_deltas[res_delta_off[p]:]
                    for k in range(k_out):
                        _backward(ni, nl, nn, w, node0, vert0, out_ptr, out_dst, out_w, out_k, direct, k,
                                  fprime, deltas, g)
                        for b in range(w):
                            base = ((r0 + b) * k_out + k) * ne
                            for e in range(ne):
                                eg[base + e] = deltas[f_dst[edge0 + e], b] * acts[f_src[edge0 + e], b]
                            base = ((r0 + b) * k_out + k) * nn
                            for n in range(nn):
                                dg[base + n] = deltas[node_row[node0 + n], b]
                    continue
                y = np.empty((k_out, w), dtype=res_out.dtype)
                for k in range(k_out):
                    y[k, :] = acts[ni + out_rows[o0 + k], :w]
                part, fits = _loss_rows(loss, scale, y, ts[r0 * k_out:(r0 + w) * k_out].reshape((w, k_out)),
                                        direct64)
                if not fits:
                    ok = False
                    break
                total += part
                for k in range(k_out):
                    for b in range(w):
                        direct[k, b] = direct64[k, b]
                _backward(ni, nl, nn, w, node0, vert0, out_ptr, out_dst, out_w, out_k, direct, -1, fprime,
                          deltas, g)
                if want_norms:
                    _norms(nl, w, node0, in_ptr, in_src, acts, deltas, scale, clip, fan, squares, g,
                           res_norms[res_norm_off[p] + r0:res_norm_off[p] + r0 + w])
                if mode == SUMS:                                   # loss mode: sums over the rows
                    eg = res_edges[res_edge_off[p]:res_edge_off[p] + ne]
                    dg = res_deltas[res_delta_off[p]:res_delta_off[p] + nn]
                    for e in range(ne):
                        eg[e] += dot(deltas[f_dst[edge0 + e], :w], acts[f_src[edge0 + e], :w])
                    for n in range(nn):
                        row = deltas[node_row[node0 + n]]
                        s = 0.0
                        for b in range(w):
                            s += row[b]
                        dg[n] += s
                else:                                              # per example
                    eg = res_edges[res_edge_off[p]:]
                    dg = res_deltas[res_delta_off[p]:]
                    for b in range(w):
                        base = (r0 + b) * ne
                        for e in range(ne):
                            eg[base + e] = deltas[f_dst[edge0 + e], b] * acts[f_src[edge0 + e], b]
                        base = (r0 + b) * nn
                        for n in range(nn):
                            dg[base + n] = deltas[node_row[node0 + n], b]
            res_loss[p] = total
            if not ok:
                status[p] = 2
                continue
            fine = np.isfinite(total) and _all_finite(outs)
            if fine and want_norms:
                fine = _all_finite(res_norms[res_norm_off[p]:res_norm_off[p] + rows])
            if fine and mode == OUTPUTS:
                fine = (_all_finite(res_edges[res_edge_off[p]:res_edge_off[p] + rows * k_out * ne])
                        and _all_finite(res_deltas[res_delta_off[p]:res_delta_off[p] + rows * k_out * nn]))
            elif fine and mode == SUMS:
                fine = (_all_finite(res_edges[res_edge_off[p]:res_edge_off[p] + ne])
                        and _all_finite(res_deltas[res_delta_off[p]:res_delta_off[p] + nn]))
            elif fine and mode == EXAMPLES:
                fine = (_all_finite(res_edges[res_edge_off[p]:res_edge_off[p] + rows * ne])
                        and _all_finite(res_deltas[res_delta_off[p]:res_delta_off[p] + rows * nn]))
            status[p] = 0 if fine else 1


def _compile(fn: Callable[..., None]) -> Any:
    """``fn`` jitted (numba's parallel loops), cached on disk where a cache folder is writable."""
    try:
        return njit(parallel=True, cache=True, **_OPTIONS)(fn)
    except RuntimeError:                       # no writable cache folder
        return njit(parallel=True, cache=False, **_OPTIONS)(fn)


run_population = _compile(_run_population)
