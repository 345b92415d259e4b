"""The activation functions of the contract, each with its derivative, safe for any finite z."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit, ndtr

__all__ = ["Activation", "ACTIVATIONS", "ACTIVATION_NAMES", "activation_code"]

Array = np.ndarray

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
# Beyond |z| = 40 both exp(-z^2) and the normal density are exactly 0 in float64; clipping
# first keeps z*z from overflowing for huge finite z.
_GAUSS_CLIP = 40.0


class Activation(NamedTuple):
    """One activation: ``forward(z) -> f(z)`` and ``derivative(z, f) -> f'(z)``."""

    name: str
    forward: Callable[[Array], Array]
    derivative: Callable[[Array, Array], Array]


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


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", _identity, _ones),
        Activation("sigmoid", expit, _sigmoid_grad),
        Activation("tanh", np.tanh, _tanh_grad),
        Activation("relu", _relu, _relu_grad),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_grad),
        Activation("elu", _elu, _elu_grad),
        Activation("softplus", _softplus, _softplus_grad),
        Activation("gelu", _gelu, _gelu_grad),
        Activation("silu", _silu, _silu_grad),
        Activation("sin", np.sin, _sin_grad),
        Activation("gauss", _gauss, _gauss_grad),
        Activation("abs", np.abs, _abs_grad),
    )
}

#: Names in a fixed order; an activation's code is its position here.
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def activation_code(name: str) -> int:
    """The stable small-integer code of an activation name."""
    return ACTIVATION_NAMES.index(name)
