"""One activation over a row of z, with its derivative when asked, and a reproducible dot product (numba only).

The formulas of the compiled kernels: exp, tanh, sigmoid and sin/cos by ``rowmath``'s row functions,
each activation evaluated in float64 and stored in the rows' dtype (``np.float64(x)``, since numba
types ``float()`` of a float32 as float32); NaN in, NaN out. Activation codes are the positions in
``model.activations.ACTIVATION_NAMES`` (``ORDER`` here; callers check that they agree).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rowmath import EXPM1_SERIES, KERNEL_OPTIONS, exp_row, expm1_series, log1p_unit, sigmoid_row, sincos_row, tanh_row

__all__ = ["ORDER", "activate", "dot"]

#: the activation names in code order, as these functions number them
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
    return z


@njit(**KERNEL_OPTIONS)
def activate(code: int, z: np.ndarray, o: np.ndarray, d: np.ndarray, tmp: np.ndarray, slope: bool) -> None:
    """o = f(z) over one row, and d = f'(z) when ``slope`` (``tmp``: 4 float64 rows of scratch)."""
    n = z.shape[0]
    f, scratch = tmp[0], tmp[1:]
    if code == 0:                                                  # identity
        for b in range(n):
            o[b] = z[b]
            if slope:
                d[b] = 1.0
    elif code == 1:                                                # sigmoid
        sigmoid_row(z, f, scratch)
        for b in range(n):
            s = f[b]
            o[b] = s
            if slope:
                d[b] = s * (1.0 - s)
    elif code == 2:                                                # tanh
        tanh_row(z, f, scratch)
        for b in range(n):
            t = f[b]
            o[b] = t
            if slope:
                d[b] = 1.0 - t * t
    elif code == 3:                                                # relu
        for b in range(n):
            x = z[b]
            o[b] = 0.0 if x <= 0.0 else x
            if slope:
                d[b] = 1.0 if x > 0.0 else 0.0
    elif code == 4:                                                # leaky_relu
        for b in range(n):
            x = z[b]
            s = 1.0 if x > 0.0 else 0.01
            o[b] = x * s
            if slope:
                d[b] = s
    elif code == 5:                                                # elu
        exp_row(z, f, scratch)
        for b in range(n):
            x = np.float64(z[b])
            e = f[b]
            small = expm1_series(x) if x > -EXPM1_SERIES else e - 1.0
            o[b] = x if x > 0.0 else small
            if slope:
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
            if slope:
                r = 1.0 / (1.0 + e)
                d[b] = e * r if x < 0.0 else r
    elif code == 7:                                                # gelu (erf form)
        for b in range(n):
            x = np.float64(z[b])
            c = _ndtr(x)
            o[b] = x * c
            if slope:
                xc = _clip(x)
                d[b] = c + xc * (math.exp(-0.5 * xc * xc) * _INV_SQRT_2PI)
    elif code == 8:                                                # silu
        sigmoid_row(z, f, scratch)
        for b in range(n):
            x = np.float64(z[b])
            s = f[b]
            o[b] = x * s
            if slope:
                d[b] = s * (1.0 + x * (1.0 - s))
    elif code == 9:                                                # sin
        sincos_row(z, f, tmp[1])
        for b in range(n):
            o[b] = f[b]
            if slope:
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
            if slope:
                d[b] = -2.0 * _clip(np.float64(z[b])) * g
    else:                                                          # abs
        for b in range(n):
            x = z[b]
            o[b] = abs(x)
            if slope:
                d[b] = 1.0 if x > 0.0 else (-1.0 if x < 0.0 else x * 0.0)


@njit(nogil=True, boundscheck=False, fastmath={"reassoc"})
def dot(x: np.ndarray, y: np.ndarray) -> float:
    """Σ x·y, vectorised: ``reassoc`` lets LLVM keep SIMD lanes of partial sums (their layout depends only on
    the length and the CPU, so a sum is the same every run and on every thread; no other fast-math flag,
    so NaN and inf propagate as usual)."""
    s = 0.0
    for b in range(x.shape[0]):
        s += x[b] * y[b]
    return s
