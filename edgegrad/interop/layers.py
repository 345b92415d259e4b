"""Layered networks from weight matrices: ``Network.from_layers`` (and the road ``from_torch`` takes).

Node ids are ``l{k}_{j}``: unit ``j`` of layer ``k``, the inputs being layer 0 (``l0_0`` …) and
weight matrix ``k`` (1-based) feeding layer ``k``. The outputs are the last layer's units. Edges
come layer by layer, each layer's in row-major order of its out×in matrix, so the slice of
``edge_grads`` belonging to layer ``k`` reshapes to that matrix's shape (``layer_grads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.activations import ACTIVATIONS
from ..model.network import Network

__all__ = ["from_layers", "layer_id", "layer_grads"]


def layer_id(layer: int, unit: int) -> str:
    """The id of unit ``unit`` of layer ``layer`` (inputs are layer 0)."""
    return f"l{layer}_{unit}"


def from_layers(weights: Sequence[Any], biases: Sequence[Any] | None = None,
                activations: Sequence[str] | str | None = None) -> Network:
    """A fully connected layered network: ``weights[k]`` is out×in, ``biases[k]`` (out,), one activation a layer."""
    mats = _matrices(weights)
    widths = [mats[0].shape[1]] + [m.shape[0] for m in mats]
    acts = _activations(activations, len(mats))
    bias_list = _biases(biases, widths[1:])
    offsets = np.cumsum([0] + widths)            # first vertex of each layer
    src, dst = [], []
    for k, m in enumerate(mats):
        rows, cols = m.shape
        src.append(offsets[k] + np.tile(np.arange(cols, dtype=np.int64), rows))
        dst.append(offsets[k + 1] + np.repeat(np.arange(rows, dtype=np.int64), cols))
    ids = [[layer_id(k, j) for j in range(w)] for k, w in enumerate(widths)]
    node_ids = [v for layer in ids[1:] for v in layer]
    node_acts = [a for a, w in zip(acts, widths[1:]) for _ in range(w)]
    return Network.from_arrays(ids[0], ids[-1], node_ids, node_acts, np.concatenate(bias_list),
                               np.concatenate(src), np.concatenate(dst),
                               np.concatenate([m.ravel() for m in mats]))


def layer_grads(edge_values: Any, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Split the last axis of ``edge_grads`` of a ``from_layers`` network into one out×in array per layer."""
    values = np.asarray(edge_values)
    sizes = [int(r) * int(c) for r, c in shapes]
    if values.shape[-1] != sum(sizes):
        raise InvalidInput(f"edge_grads: last axis has {values.shape[-1]} entries, the layers {sum(sizes)}")
    parts = np.split(values, np.cumsum(sizes)[:-1], axis=-1)
    return [p.reshape(values.shape[:-1] + (int(r), int(c))) for p, (r, c) in zip(parts, shapes)]


def _matrices(weights: Sequence[Any]) -> list[np.ndarray]:
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or not weights:
        raise InvalidInput("weights: expected a non-empty list of out×in matrices")
    mats: list[np.ndarray] = []
    for k, w in enumerate(weights):
        try:
            m = np.asarray(w, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(f"weights[{k}]: expected a matrix of numbers") from None
        if m.ndim != 2 or 0 in m.shape:
            raise InvalidInput(f"weights[{k}]: expected a non-empty out×in matrix, got shape {m.shape}")
        if mats and m.shape[1] != mats[-1].shape[0]:
            raise InvalidInput(f"weights[{k}]: has {m.shape[1]} columns but layer {k} has "
                               f"{mats[-1].shape[0]} units (weights[{k - 1}] is {mats[-1].shape})")
        if not np.isfinite(m).all():
            r, c = np.argwhere(~np.isfinite(m))[0]
            raise InvalidInput(f"weights[{k}][{r}][{c}]: must be finite, got {m[r, c]}")
        mats.append(m)
    return mats


def _biases(biases: Sequence[Any] | None, widths: list[int]) -> list[np.ndarray]:
    if biases is None:
        return [np.zeros(w) for w in widths]
    if not isinstance(biases, (list, tuple)) or len(biases) != len(widths):
        raise InvalidInput(f"biases: expected a list of {len(widths)} vectors (one per weight matrix)")
    out = []
    for k, (b, w) in enumerate(zip(biases, widths)):
        v = np.zeros(w) if b is None else np.asarray(b, dtype=np.float64)
        if v.shape != (w,):
            raise InvalidInput(f"biases[{k}]: expected shape ({w},), got {v.shape}")
        out.append(v)
    return out


def _activations(activations: Sequence[str] | str | None, n: int) -> list[str]:
    if activations is None or isinstance(activations, str):
        acts = [activations or "identity"] * n
    else:
        acts = list(activations)
    if len(acts) != n:
        raise InvalidInput(f"activations: expected {n} names (one per weight matrix), got {len(acts)}")
    for k, a in enumerate(acts):
        if not isinstance(a, str) or a not in ACTIVATIONS:
            raise InvalidInput(f"activations[{k}]: unknown activation {a!r}"
                               f" (expected one of {', '.join(ACTIVATIONS)})")
    return acts
