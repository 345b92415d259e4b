"""The activation functions of the contract, each with its derivative, safe for any finite z."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import expit, ndtr

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_NAMES", "activation_code"]

Array = np.ndarray

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
# Beyond |z| = 40 both exp(-z^2) and the normal density are exactly 0 in float64; clipping
# first keeps z*z from overflowing for huge finite z.
_GAUSS_CLIP = 40.0


class Activation(NamedTuple):
    """One activation: ``forward(z) -> f(z)``, ``derivative(z, f) -> f'(z)``, and both in one pass.

    ``fused(z, o, d)`` writes f(z) into ``o`` and f'(z) into ``d`` (arrays of z's shape and dtype,
    not overlapping z), sharing intermediates and allocating as little as it can; it agrees with
    ``forward``/``derivative`` to the last bit or two.
    """

    name: str
    forward: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]
    fused: Callable[[Array, Array, Array], None]


def _identity(z: Array) -> Array:
    return z.copy()


def _ones(z: Array, f: Array) -> Array:
    return np.ones_like(z)


def _sigmoid_grad(z: Array, f: Array) -> Array:
    return f * (1.0 - f)


def _tanh_grad(z: Array, f: Array) -> Array:
    return 1.0 - f * f


def _relu(z: Array) -> Array:
    return np.maximum(z, 0.0)


def _relu_grad(z: Array, f: Array) -> Array:
    return (z > 0).astype(z.dtype)


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, 0.01 * z)


def _leaky_relu_grad(z: Array, f: Array) -> Array:
    return np.where(z > 0, 1.0, 0.01).astype(z.dtype)


def _elu(z: Array) -> Array:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))


def _elu_grad(z: Array, f: Array) -> Array:
    return np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))).astype(z.dtype)


def _softplus(z: Array) -> Array:
    return np.logaddexp(z.dtype.type(0), z)


def _softplus_grad(z: Array, f: Array) -> Array:
    return expit(z)


def _gelu(z: Array) -> Array:
    return z * ndtr(z)


def _gelu_grad(z: Array, f: Array) -> Array:
    zc = np.clip(z, -_GAUSS_CLIP, _GAUSS_CLIP)
    return ndtr(z) + zc * (np.exp(-0.5 * zc * zc) * _INV_SQRT_2PI)


def _silu(z: Array) -> Array:
    return z * expit(z)


def _silu_grad(z: Array, f: Array) -> Array:
    s = expit(z)
    return s * (1.0 + z * (1.0 - s))


def _sin_grad(z: Array, f: Array) -> Array:
    return np.cos(z)


def _gauss(z: Array) -> Array:
    zc = np.clip(z, -_GAUSS_CLIP, _GAUSS_CLIP)
    return np.exp(-(zc * zc))


def _gauss_grad(z: Array, f: Array) -> Array:
    zc = np.clip(z, -_GAUSS_CLIP, _GAUSS_CLIP)
    return -2.0 * zc * f


def _abs_grad(z: Array, f: Array) -> Array:
    return np.sign(z)


# ------------------------------------------------------------------ f and f' in one pass
def _clipped(z: Array) -> Array:
    """z clipped to ±_GAUSS_CLIP (two ufunc calls: np.clip's Python wrapper costs more on small blocks)."""
    zc = np.minimum(z, _GAUSS_CLIP)
    return np.maximum(zc, -_GAUSS_CLIP, out=zc)


def _identity_both(z: Array, o: Array, d: Array) -> None:
    np.copyto(o, z)
    d.fill(1)


def _sigmoid_both(z: Array, o: Array, d: Array) -> None:
    expit(z, out=o)
    np.subtract(1, o, out=d)
    d *= o


def _tanh_both(z: Array, o: Array, d: Array) -> None:
    np.tanh(z, out=o)
    np.multiply(o, o, out=d)
    np.subtract(1, d, out=d)


def _relu_both(z: Array, o: Array, d: Array) -> None:
    np.maximum(z, 0, out=o)
    np.greater(z, 0, out=d)


def _leaky_relu_both(z: Array, o: Array, d: Array) -> None:
    d.fill(0.01)
    np.copyto(d, 1, where=z > 0)
    np.multiply(z, d, out=o)                       # z·1 = z and z·0.01 exactly as the two-pass form


def _elu_both(z: Array, o: Array, d: Array) -> None:
    m = np.minimum(z, 0)
    np.expm1(m, out=o)
    np.exp(m, out=d)
    positive = z > 0
    np.copyto(o, z, where=positive)
    np.copyto(d, 1, where=positive)


def _softplus_both(z: Array, o: Array, d: Array) -> None:
    e = np.abs(z)
    np.negative(e, out=e)
    np.exp(e, out=e)                               # e = exp(-|z|) ∈ (0, 1]
    np.log1p(e, out=o)
    o += np.maximum(z, 0)                          # softplus = max(z, 0) + log1p(exp(-|z|))
    np.add(e, 1, out=d)
    np.divide(1, d, out=d)                         # 1 / (1 + e)
    negative = z < 0
    np.multiply(e, d, out=d, where=negative)       # z < 0: e / (1 + e); both are expit(z)


def _gelu_both(z: Array, o: Array, d: Array) -> None:
    ndtr(z, out=d)
    np.multiply(z, d, out=o)
    zc = _clipped(z)
    density = zc * zc
    density *= -0.5
    np.exp(density, out=density)
    density *= _INV_SQRT_2PI
    density *= zc
    d += density


def _silu_both(z: Array, o: Array, d: Array) -> None:
    expit(z, out=d)                                # s
    np.multiply(z, d, out=o)                       # z·s
    t = np.subtract(1, d)
    t *= z
    t += 1
    d *= t                                         # s·(1 + z·(1 - s))


def _sin_both(z: Array, o: Array, d: Array) -> None:
    np.sin(z, out=o)
    np.cos(z, out=d)


def _gauss_both(z: Array, o: Array, d: Array) -> None:
    zc = _clipped(z)
    np.multiply(zc, zc, out=o)
    np.negative(o, out=o)
    np.exp(o, out=o)
    np.multiply(zc, -2.0, out=d)
    d *= o


def _abs_both(z: Array, o: Array, d: Array) -> None:
    np.abs(z, out=o)
    np.sign(z, out=d)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", _identity, _ones, _identity_both),
        Activation("sigmoid", expit, _sigmoid_grad, _sigmoid_both),
        Activation("tanh", np.tanh, _tanh_grad, _tanh_both),
        Activation("relu", _relu, _relu_grad, _relu_both),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_grad, _leaky_relu_both),
        Activation("elu", _elu, _elu_grad, _elu_both),
        Activation("softplus", _softplus, _softplus_grad, _softplus_both),
        Activation("gelu", _gelu, _gelu_grad, _gelu_both),
        Activation("silu", _silu, _silu_grad, _silu_both),
        Activation("sin", np.sin, _sin_grad, _sin_both),
        Activation("gauss", _gauss, _gauss_grad, _gauss_both),
        Activation("abs", np.abs, _abs_grad, _abs_both),
    )
}

#: Names in a fixed order; an activation's code is its position here.
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def activation_code(name: str) -> int:
    """The stable small-integer code of an activation name."""
    return ACTIVATION_NAMES.index(name)
