"""The compiled kernels' SIMD row functions (exp, tanh, sigmoid, sin/cos and the series) against libm.

numpy's ufuncs call libm (within 1 ulp); ours must stay within a few ulp of them over the whole range,
keep the special values, and give the same bits for a value wherever it sits in a row (vector body or
scalar tail), so results never depend on a batch size or a row split.
"""

from __future__ import annotations

import numpy as np
import pytest

rowmath = pytest.importorskip("edgegrad.engine.rowmath", reason="numba is not installed")

#: our functions against libm: a few ulp (libm's own error is up to 1)
MAX_ULP = 4


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of want's last place; equal infinities and NaNs count 0."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want) / np.spacing(np.abs(want))
    return np.where(same, 0.0, diff)


def _samples(lo: float, hi: float, n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(lo, hi, n), rng.uniform(-1, 1, n // 4), rng.uniform(-1e-6, 1e-6, 200),
                           [0.0, -0.0, 5e-324, -5e-324, 1e-300, 0.3, -0.3, 0.2999999999, 0.3000000001]])


def _row(fn, x: np.ndarray) -> np.ndarray:
    out = np.empty(x.size)
    fn(x, out, np.empty((3, x.size)))
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x < 0, e, 1.0) / (1.0 + e)


@pytest.mark.parametrize("name, ours, libm, lo, hi", [
    ("exp", rowmath.exp_row, np.exp, -760.0, 720.0),
    ("tanh", rowmath.tanh_row, np.tanh, -25.0, 25.0),
    ("sigmoid", rowmath.sigmoid_row, _sigmoid, -760.0, 760.0),
])
def test_row_functions_match_libm(name: str, ours, libm, lo: float, hi: float) -> None:
    x = _samples(lo, hi)
    with np.errstate(over="ignore", under="ignore"):
        want = libm(x)
    ulps = _ulps(_row(ours, x), want)
    assert ulps.max() <= MAX_ULP, f"{name}: {ulps.max()} ulp at x = {x[ulps.argmax()]!r}"


def test_exp_keeps_subnormals_overflow_and_specials() -> None:
    x = np.array([-708.5, -720.0, -740.0, -745.0, -745.2, -746.0, -1e10, 709.78, 709.79, 710.0, 1e10,
                  np.inf, -np.inf, np.nan])
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(x)
    got = _row(rowmath.exp_row, x)
    assert _ulps(got, want).max() <= 1.0, list(zip(x, got, want))


@pytest.mark.parametrize("lo, hi", [(-7.0, 7.0), (-1e5, 1e5)])
def test_sin_and_cos_match_libm(lo: float, hi: float) -> None:
    x = np.concatenate([_samples(lo, hi), np.arange(-300, 300) * (np.pi / 2)])
    s, c = np.empty(x.size), np.empty(x.size)
    rowmath.sincos_row(x, s, c)
    # near a multiple of π/2 the value is tiny and both are within ulps of a tiny number: compare absolutely there
    for got, want in ((s, np.sin(x)), (c, np.cos(x))):
        close = np.abs(got - want) <= 1e-16 * np.maximum(1.0, np.abs(x) / 1e3)
        ulps = np.where(close, 0.0, _ulps(got, want))
        assert ulps.max() <= MAX_ULP, f"{ulps.max()} ulp at x = {x[ulps.argmax()]!r}"


def test_sin_and_cos_beyond_the_reduction_fall_back_to_libm() -> None:
    x = np.array([1.5e5, -3e7, 1e22, np.inf, -np.inf, np.nan, 0.5])
    s, c = np.empty(x.size), np.empty(x.size)
    with np.errstate(invalid="ignore"):
        rowmath.sincos_row(x, s, c)
        assert _ulps(s, np.sin(x)).max() == 0 and _ulps(c, np.cos(x)).max() <= MAX_ULP


def test_series_match_libm_near_zero() -> None:
    from numba import njit

    @njit
    def each(fn_code: int, x: np.ndarray, out: np.ndarray) -> None:
        for i in range(x.size):
            if fn_code == 0:
                out[i] = rowmath.expm1_series(x[i])
            elif fn_code == 1:
                out[i] = rowmath.tanh_series(x[i])
            else:
                out[i] = rowmath.log1p_unit(x[i])

    small = _samples(-rowmath.EXPM1_SERIES, rowmath.EXPM1_SERIES)
    small = small[np.abs(small) < rowmath.EXPM1_SERIES]
    unit = np.abs(_samples(0.0, 1.0))
    for code, x, libm in ((0, small, np.expm1), (1, small, np.tanh), (2, unit, np.log1p)):
        out = np.empty(x.size)
        each(code, x, out)
        ulps = _ulps(out, libm(x))
        assert ulps.max() <= MAX_ULP, f"function {code}: {ulps.max()} ulp at {x[ulps.argmax()]!r}"


@pytest.mark.parametrize("fn", [rowmath.exp_row, rowmath.tanh_row, rowmath.sigmoid_row])
def test_a_value_gives_the_same_bits_anywhere_in_a_row(fn) -> None:
    x = np.random.default_rng(3).uniform(-20, 20, 61)
    whole = _row(fn, x)
    for start in range(0, 61, 7):                    # every element in a vector body and in a tail
        for length in (1, 3, 5, 8, 13):
            part = x[start:start + length]
            assert np.array_equal(_row(fn, part), whole[start:start + length])
    s, c = np.empty(61), np.empty(61)
    rowmath.sincos_row(x, s, c)
    s1, c1 = np.empty(5), np.empty(5)
    rowmath.sincos_row(x[17:22], s1, c1)
    assert np.array_equal(s1, s[17:22]) and np.array_equal(c1, c[17:22])


def test_float32_rows_are_read_as_float64() -> None:
    x32 = np.linspace(-5, 5, 37, dtype=np.float32)
    assert np.array_equal(_row(rowmath.tanh_row, x32), _row(rowmath.tanh_row, x32.astype(np.float64)))
