"""exp, tanh, sigmoid and sin/cos over a whole row (and series for expm1, tanh and log1p near 0), in loops
LLVM turns into SIMD code (numba only).

libm's scalar functions cost 10–30 ns an element here, most of the compiled forward pass. These
loops have no calls and no branches, only selects, so LLVM vectorises them. They stay within a few
ulp of libm (checked against high precision in ``tests/test_engine_rowmath.py``) and keep libm's
special values: NaN in, NaN out; exp(+inf) = inf, exp(-inf) = 0; subnormal results.
No fast-math flag is used, so every element is computed by the same operations wherever it sits in
the row (vector body or scalar tail): a result never depends on the batch size or a row split.

exp(x) = 2^k · e^r with k = round(x / ln 2) and |r| ≤ ln 2 / 2; e^r is its Taylor polynomial (the
terms left out are below 1e-17 of it); 2^k is built from bits, as two factors so that results in
the subnormal range round once more at most. The constants are derived here at import.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
from numba import njit

__all__ = ["KERNEL_OPTIONS", "jit_kernel", "exp_row", "tanh_row", "sigmoid_row", "sincos_row", "expm1_series", "tanh_series", "log1p_unit", "EXPM1_SERIES"]


def _split_ln2() -> tuple[float, float]:
    """ln 2 as hi + lo: hi with 32 significant bits (so k·hi is exact), lo the rest to double precision."""
    with localcontext() as ctx:
        ctx.prec = 60
        ln2 = Decimal(2).ln()
        bits = struct.unpack("<Q", struct.pack("<d", float(ln2)))[0] & ~((1 << 32) - 1)
        hi = struct.unpack("<d", struct.pack("<Q", bits))[0]
        return hi, float(ln2 - Decimal(hi))


def _pi(digits: int = 60) -> Decimal:
    """π to ``digits`` decimal digits, by Machin's formula π = 16·atan(1/5) - 4·atan(1/239)."""
    def atan_inverse(n: int) -> Decimal:
        total, power, k = Decimal(0), Decimal(1) / n, 0
        while power > Decimal(10) ** -(digits + 5):
            total += power / (2 * k + 1) * (-1 if k % 2 else 1)
            power /= n * n
            k += 1
        return total

    with localcontext() as ctx:
        ctx.prec = digits + 10
        return 16 * atan_inverse(5) - 4 * atan_inverse(239)


def _split_half_pi() -> tuple[float, float, float]:
    """π/2 as three doubles, the first two with 33 significant bits (so n·part is exact for n < 2^20)."""
    with localcontext() as ctx:
        ctx.prec = 60
        rest, parts = _pi() / 2, []
        for _ in range(2):
            bits = struct.unpack("<Q", struct.pack("<d", float(rest)))[0] & ~((1 << 20) - 1)
            part = struct.unpack("<d", struct.pack("<Q", bits))[0]
            parts.append(part)
            rest -= Decimal(part)
        return parts[0], parts[1], float(rest)


def _tanh_coefficients(terms: int) -> list[float]:
    """Odd Taylor coefficients a1, a3, … of tanh, exactly from tanh' = 1 - tanh², then rounded."""
    a = [Fraction(0)] * (2 * terms + 1)
    a[1] = Fraction(1)
    for k in range(1, 2 * terms - 1):
        square = sum((a[i] * a[k - i] for i in range(k + 1)), Fraction(0))   # coefficient of x^k in tanh²
        a[k + 1] = -square / (k + 1)
    return [float(c) for c in a[1::2]]


_LN2_HI, _LN2_LO = _split_ln2()
_LOG2E = 1.0 / math.log(2.0)
_SHIFT = 6755399441055744.0                    # 1.5·2^52: x + shift rounds x to an integer in the low bits
_SHIFT_BITS = struct.unpack("<q", struct.pack("<d", _SHIFT))[0]
_EXP_MAX, _EXP_MIN = 710.0, -746.0            # beyond these exp is inf or 0; clamping keeps k in range
_F = [1.0 / math.factorial(n) for n in range(15)]
_F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12, _F13, _F14 = _F[2:15]
_T = _tanh_coefficients(13)
_T3, _T5, _T7, _T9, _T11, _T13, _T15, _T17, _T19, _T21, _T23, _T25 = _T[1:13]
_PIO2_1, _PIO2_2, _PIO2_3 = _split_half_pi()
_TWO_OVER_PI = float(2 / _pi())
_SIN = [(-1.0) ** n / math.factorial(2 * n + 1) for n in range(10)]   # r^(2n+1) terms, |r| ≤ π/4
_COS = [(-1.0) ** n / math.factorial(2 * n) for n in range(11)]
_S1, _S2, _S3, _S4, _S5, _S6, _S7, _S8, _S9 = _SIN[1:10]
_C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10 = _COS[1:11]
#: beyond this |x| the three-part reduction is not exact enough: libm's sin and cos take over
SINCOS_REDUCED_MAX = 1e5
_L = [1.0 / (2 * n + 1) for n in range(19)]   # 2·atanh(s) = 2s·Σ s^2n / (2n+1)
_L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8, _L9, _L10, _L11, _L12, _L13, _L14, _L15, _L16, _L17, _L18 = _L[1:19]
#: below these |x| the series is used (its first term dominates: no cancellation), above the exp form
_TANH_SERIES = EXPM1_SERIES = 0.3

#: how every numba loop is compiled (here and in ``numba_loops``): no GIL, numpy's float errors, no bounds checks
KERNEL_OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy", "boundscheck": False}


def jit_kernel(fn: Callable[..., Any]) -> Any:
    """njit with KERNEL_OPTIONS and an on-disk cache; without one where numba finds no writable cache folder."""
    try:
        return njit(cache=True, **KERNEL_OPTIONS)(fn)
    except RuntimeError:                       # "cannot cache function ...: no locator available"
        return njit(cache=False, **KERNEL_OPTIONS)(fn)


def _exp_row(x: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """out = e^x over a row (``scratch``: 2 float64 rows at least as long; overwritten; not aliasing x or out)."""
    n = x.shape[0]
    t_row, scale = scratch[0], scratch[1]
    for b in range(n):
        v: float = np.float64(x[b])
        v = _EXP_MAX if v > _EXP_MAX else v
        v = _EXP_MIN if v < _EXP_MIN else v                   # NaN passes both and stays NaN
        t = v * _LOG2E + _SHIFT
        k = t - _SHIFT
        r = (v - k * _LN2_HI) - k * _LN2_LO
        p = _F13 + r * _F14
        p = _F12 + r * p
        p = _F11 + r * p
        p = _F10 + r * p
        p = _F9 + r * p
        p = _F8 + r * p
        p = _F7 + r * p
        p = _F6 + r * p
        p = _F5 + r * p
        p = _F4 + r * p
        p = _F3 + r * p
        p = _F2 + r * p
        out[b] = 1.0 + r * (1.0 + r * p)
        t_row[b] = t
    k_bits, scale_bits = t_row[:n].view(np.int64), scale[:n].view(np.int64)
    for b in range(n):
        k = k_bits[b] - _SHIFT_BITS                           # k, from the low bits of x/ln2 + shift
        half = k >> 1
        k_bits[b] = (half + 1023) << 52                       # 2^half
        scale_bits[b] = (k - half + 1023) << 52               # 2^(k - half)
    for b in range(n):
        out[b] = out[b] * t_row[b] * scale[b]


def _expm1_series(x: float) -> float:
    """e^x - 1 for |x| < 0.3 by its Taylor series (terms left out < 1e-17 of it)."""
    p = _F12 + x * _F13
    p = _F11 + x * p
    p = _F10 + x * p
    p = _F9 + x * p
    p = _F8 + x * p
    p = _F7 + x * p
    p = _F6 + x * p
    p = _F5 + x * p
    p = _F4 + x * p
    p = _F3 + x * p
    p = _F2 + x * p
    return x + x * (x * p)


def _tanh_series(x: float) -> float:
    """tanh x for |x| < 0.3 by its odd Taylor series."""
    u = x * x
    p = _T23 + u * _T25
    p = _T21 + u * p
    p = _T19 + u * p
    p = _T17 + u * p
    p = _T15 + u * p
    p = _T13 + u * p
    p = _T11 + u * p
    p = _T9 + u * p
    p = _T7 + u * p
    p = _T5 + u * p
    p = _T3 + u * p
    return x + x * (u * p)


def _log1p_unit(e: float) -> float:
    """log(1 + e) for 0 ≤ e ≤ 1, as 2·atanh(e / (2 + e)) by its series (no cancellation near 0)."""
    s = e / (2.0 + e)
    u = s * s
    p = _L17 + u * _L18
    p = _L16 + u * p
    p = _L15 + u * p
    p = _L14 + u * p
    p = _L13 + u * p
    p = _L12 + u * p
    p = _L11 + u * p
    p = _L10 + u * p
    p = _L9 + u * p
    p = _L8 + u * p
    p = _L7 + u * p
    p = _L6 + u * p
    p = _L5 + u * p
    p = _L4 + u * p
    p = _L3 + u * p
    p = _L2 + u * p
    p = _L1 + u * p
    return 2.0 * s + 2.0 * s * (u * p)


exp_row = jit_kernel(_exp_row)
expm1_series = njit(inline="always")(_expm1_series)
tanh_series = njit(inline="always")(_tanh_series)
log1p_unit = njit(inline="always")(_log1p_unit)


def _tanh_row(x: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """out = tanh x over a row: the series near 0, else ±(1 - 2 / (e^2|x| + 1)) (``scratch``: 3 rows)."""
    n = x.shape[0]
    twice = scratch[2]
    for b in range(n):
        twice[b] = 2.0 * abs(np.float64(x[b]))
    exp_row(twice[:n], out, scratch)
    for b in range(n):
        v = np.float64(x[b])
        a = 1.0 - 2.0 / (out[b] + 1.0)
        a = -a if v < 0.0 else a
        out[b] = tanh_series(v) if abs(v) < _TANH_SERIES else a      # NaN: both NaN


def _sigmoid_row(x: np.ndarray, out: np.ndarray, scratch: np.ndarray) -> None:
    """out = 1 / (1 + e^-x) over a row, as e^-|x| over 1 + e^-|x| for x < 0 (``scratch``: 3 rows)."""
    n = x.shape[0]
    negative = scratch[2]
    for b in range(n):
        negative[b] = -abs(np.float64(x[b]))
    exp_row(negative[:n], out, scratch)
    for b in range(n):
        e = out[b]
        out[b] = (e if np.float64(x[b]) < 0.0 else 1.0) / (1.0 + e)


def _sincos_row(x: np.ndarray, sin_out: np.ndarray, cos_out: np.ndarray) -> None:
    """sin x and cos x over a row: x = n·π/2 + r, |r| ≤ π/4, Taylor polynomials of r, the quadrant n mod 4.

    Elements with |x| > ``SINCOS_REDUCED_MAX`` (and inf, NaN) are redone by libm in a second loop.
    """
    n = x.shape[0]
    far = 0
    for b in range(n):
        v: float = np.float64(x[b])
        near = abs(v) <= SINCOS_REDUCED_MAX                   # False for inf and NaN too
        far += 0 if near else 1
        v = v if near else 0.0
        k = (v * _TWO_OVER_PI + _SHIFT) - _SHIFT
        r = ((v - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
        u = r * r
        p = _S8 + u * _S9
        p = _S7 + u * p
        p = _S6 + u * p
        p = _S5 + u * p
        p = _S4 + u * p
        p = _S3 + u * p
        p = _S2 + u * p
        p = _S1 + u * p
        sin_r = r + r * (u * p)
        c = _C9 + u * _C10
        c = _C8 + u * c
        c = _C7 + u * c
        c = _C6 + u * c
        c = _C5 + u * c
        c = _C4 + u * c
        c = _C3 + u * c
        c = _C2 + u * c
        cos_r = 1.0 + u * (_C1 + u * c)
        q = k - 4.0 * math.floor(k * 0.25)                    # n mod 4, exactly
        odd = (q == 1.0) | (q == 3.0)
        s = cos_r if odd else sin_r
        c2 = sin_r if odd else cos_r
        sin_out[b] = -s if q >= 2.0 else s
        cos_out[b] = -c2 if (q == 1.0) | (q == 2.0) else c2
    if far:
        for b in range(n):
            v = np.float64(x[b])
            if not abs(v) <= SINCOS_REDUCED_MAX:
                sin_out[b] = math.sin(v)
                cos_out[b] = math.cos(v)


tanh_row = jit_kernel(_tanh_row)
sincos_row = jit_kernel(_sincos_row)
sigmoid_row = jit_kernel(_sigmoid_row)
