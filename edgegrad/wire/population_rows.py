"""A population request's rows on the wire: shared (one tensor), one tensor per network, or packed.

Packed rows are every network's rows in one tensor (``inputs_packed`` / ``targets_packed``, network p's
``row_counts[p]`` rows of its own width after network p-1's): what the client sends for per-network rows,
so P networks' rows take one message field whatever P is. ``read_rows`` gives either per-network form
as a list of arrays (views, no copy) for networks [a, b).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.population_checks import Rows
from ..errors import InvalidInput
from ..v1 import job_pb2
from .codec import array_from_tensor, tensor_from_array

__all__ = ["put_rows", "read_rows", "has_rows", "row_counts"]


def put_rows(pop: job_pb2.PopulationRequest, name: str, rows: Rows) -> None:
    """Shared rows into ``name``; per-network rows packed into ``name_packed`` (with ``row_counts``)."""
    if rows.each is None:
        getattr(pop, name).CopyFrom(tensor_from_array(rows.shared))
        return
    counts = np.array([a.shape[0] for a in rows.each], dtype=np.int64)
    if not pop.HasField("row_counts"):
        pop.row_counts.CopyFrom(tensor_from_array(counts))
    flat = np.concatenate([np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in rows.each])
    getattr(pop, f"{name}_packed").CopyFrom(tensor_from_array(flat))


def has_rows(pop: job_pb2.PopulationRequest, name: str) -> bool:
    """Whether the request gives ``name`` (inputs or targets) in any form."""
    return pop.HasField(name) or len(getattr(pop, f"{name}_each")) > 0 or pop.HasField(f"{name}_packed")


def read_rows(pop: job_pb2.PopulationRequest, name: str, widths: np.ndarray, a: int = 0,
              b: int | None = None) -> Any:
    """Shared rows (one array), networks [a, b)'s own rows (a list of arrays), or None when not given.

    ``widths``: columns of each of the request's networks (inputs I_p, or outputs K_p for targets).
    InvalidInput naming the field when the forms are mixed or a packed tensor does not add up.
    """
    count = len(widths)
    b = count if b is None else b
    shared, each, packed = pop.HasField(name), getattr(pop, f"{name}_each"), pop.HasField(f"{name}_packed")
    if shared + (len(each) > 0) + packed > 1:
        raise InvalidInput(f"{name}: give {name} (shared), {name}_each or {name}_packed (per network), one of them")
    if shared:
        return array_from_tensor(getattr(pop, name), name)
    if len(each):
        stop = len(each) if (a, b) == (0, count) else b   # all of them: check_population counts them
        return [array_from_tensor(each[p], f"{name}[{p}]") for p in range(a, stop)]
    if not packed:
        if name == "inputs":
            raise InvalidInput("inputs: missing")
        return None
    rows = row_counts(pop, count)
    flat = array_from_tensor(getattr(pop, f"{name}_packed"), f"{name}_packed")
    sizes = rows * widths
    if flat.ndim != 1 or flat.dtype.kind != "f" or flat.size != int(sizes.sum()):
        raise InvalidInput(f"{name}_packed: expected {int(sizes.sum())} float values (row_counts[p] rows of each"
                           f" network's {'inputs' if name == 'inputs' else 'outputs'}, network after network), got"
                           f" {flat.dtype.name} of shape {list(flat.shape)}")
    starts = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    bounds = starts.tolist()
    shapes = np.stack([rows, widths], axis=1).tolist()
    return [flat[bounds[p]:bounds[p + 1]].reshape(shapes[p]) for p in range(a, b)]


def row_counts(pop: job_pb2.PopulationRequest, count: int) -> np.ndarray:
    """The request's ``row_counts``: ``count`` rows counts, checked (InvalidInput naming the field)."""
    if not pop.HasField("row_counts"):
        raise InvalidInput("row_counts: missing (packed rows need each network's number of rows)")
    rows = array_from_tensor(pop.row_counts, "row_counts")
    if rows.dtype.kind not in "iu" or rows.shape != (count,):
        raise InvalidInput(f"row_counts: expected {count} integers (one per network), got {rows.dtype.name} of"
                           f" shape {list(rows.shape)}")
    rows = rows.astype(np.int64)
    if (rows < 0).any():
        p = int(np.argmax(rows < 0))
        raise InvalidInput(f"row_counts[{p}]: {int(rows[p])} is not a number of rows")
    return rows
