"""Checks of a request's batch: inputs, targets, loss options, dtype; messages name the place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.sizes import NetworkSizes
from .losses import LOSSES, REDUCTIONS

__all__ = ["DTYPES", "check_array", "check_modes", "check_options", "check_float32_range", "dtype_name"]

DTYPES = ("float64", "float32")


def check_array(values: Any, name: str, columns: int, column_names: Sequence[str],
                row_offset: int = 0) -> np.ndarray:
    """A finite float64 B×columns array, or InvalidInput naming the first bad place (rows counted from ``row_offset``)."""
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: expected a B×{columns} array of numbers (rows of {columns})") from None
    if raw.ndim != 2 or raw.shape[1] != columns:
        raise InvalidInput(f"{name}: expected shape (B, {columns}) with columns {_names(column_names)},"
                           f" got {raw.shape}")
    if raw.shape[0] == 0:
        raise InvalidInput(f"{name}: the batch is empty (B = 0)")
    if raw.dtype.kind not in "iuf":
        rows = values if isinstance(values, (list, tuple)) else raw
        for b, row in enumerate(rows):
            for c, cell in enumerate(row):
                if isinstance(cell, (bool, np.bool_)) or not isinstance(cell, (int, float, np.integer, np.floating)):
                    shown = cell.item() if isinstance(cell, np.generic) else cell
                    raise InvalidInput(f"{name}[{row_offset + b}][{c}]: expected a number, got {shown!r}")
    arr = raw.astype(np.float64, copy=False)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        b, c = bad[0]
        raise InvalidInput(f"{name}[{row_offset + b}][{c}]: must be finite, got {arr[b, c]}")
    return arr


def dtype_name(dtype: Any) -> str:
    """'float64' or 'float32' for a name or numpy dtype, else InvalidInput."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in DTYPES:
        raise InvalidInput(f"dtype: unknown dtype '{dtype}' (expected one of {', '.join(DTYPES)})")
    return name


def check_float32_range(values: np.ndarray, place: str, row_offset: int = 0) -> None:
    """Refuse finite float64 values that float32 would turn into ±inf; ``place`` has {} for the index.

    ``row_offset`` is added to the first index in the message (rows of a larger batch).
    """
    limit = np.finfo(np.float32).max
    bad = np.argwhere(np.abs(values) > limit)
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        where = place.format(index[0] + row_offset, *index[1:])
        raise InvalidInput(f"{where}: {values[index]} is beyond float32's range (use dtype float64)")


def _names(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:6])
    return f"[{shown}{', ...' if len(ids) > 6 else ''}]"


def check_modes(loss: str | None, reduction: str, dtype: Any, per_example: bool) -> str:
    """Check the loss, reduction, dtype and per_example of a request together; the dtype's name."""
    dtype = dtype_name(dtype)
    if loss is not None and loss not in LOSSES:
        raise InvalidInput(f"loss: unknown loss '{loss}' (expected one of {', '.join(LOSSES)})")
    if reduction not in REDUCTIONS:
        raise InvalidInput(f"reduction: unknown reduction '{reduction}' (expected one of {', '.join(REDUCTIONS)})")
    if loss is None and per_example:
        raise InvalidInput("per_example: only meaningful with a loss (output mode is already per example)")
    if loss is None and reduction != "mean":
        raise InvalidInput(f"reduction: '{reduction}' is only meaningful with a loss")
    return dtype


def check_options(net: NetworkSizes, inputs: Any, targets: Any, loss: str | None, reduction: str,
                  dtype: str, per_example: bool = False, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a whole request; return (inputs, targets) as float64 arrays (messages count rows from ``row_offset``)."""
    dtype = check_modes(loss, reduction, dtype, per_example)
    x = check_array(inputs, "inputs", net.n_inputs, net.inputs, row_offset)
    if dtype == "float32":
        check_float32_range(x, "inputs[{}][{}]", row_offset)
    if loss is None:
        if targets is not None:
            raise InvalidInput("targets: given without a loss (pass loss='mse', 'bce' or 'softmax_ce')")
        return x, None
    if targets is None:
        raise InvalidInput(f"targets: loss '{loss}' needs targets (B×{net.n_outputs})")
    t = check_array(targets, "targets", net.n_outputs, net.outputs, row_offset)
    if dtype == "float32":
        check_float32_range(t, "targets[{}][{}]", row_offset)
    if t.shape[0] != x.shape[0]:
        raise InvalidInput(f"targets: has {t.shape[0]} rows but inputs has {x.shape[0]}")
    if loss in ("bce", "softmax_ce"):
        bad = np.argwhere((t < 0) | (t > 1))
        if bad.size:
            b, k = bad[0]
            raise InvalidInput(f"targets[{row_offset + b}][{k}]: {loss} needs targets in [0, 1], got {t[b, k]}")
    return x, t
