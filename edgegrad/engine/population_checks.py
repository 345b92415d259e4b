"""Checks of a population request: the networks, shared or per-network inputs and targets; messages name the entry.

Shared rows (one 2-D array-like) are checked once and then against each network's sizes at once;
per-network arrays are checked together (one finiteness pass over all of them) and looked at one by
one only to name the first bad one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from ..model.population import PopulationColumns
from ..model.sizes import NetworkSizes
from .batch import check_array, check_float32_range, check_modes

__all__ = ["Rows", "check_nets", "check_population", "is_per_network"]


class Rows(NamedTuple):
    """Validated inputs or targets: one shared float64 array, or one per network."""

    shared: np.ndarray | None
    each: list[np.ndarray] | None

    @property
    def arrays(self) -> list[np.ndarray]:
        """``[shared]`` where the rows are shared, else every network's array."""
        if self.each is not None:
            return self.each
        assert self.shared is not None  # a Rows holds the one or the other
        return [self.shared]

    def of(self, p: int) -> np.ndarray:
        """Network ``p``'s rows."""
        return self.arrays[0 if self.each is None else p]

    def counts(self, n: int) -> np.ndarray:
        """Rows of each of ``n`` networks."""
        if self.each is None:
            return np.full(n, self.of(0).shape[0])
        return np.array([a.shape[0] for a in self.each])


def check_nets(nets: Any) -> list[Network] | PopulationColumns:
    """A non-empty list of networks (or ``PopulationColumns``, checked when built), or InvalidInput naming the
    first entry that is not one."""
    if isinstance(nets, PopulationColumns):
        if not len(nets):
            raise InvalidInput("nets: expected at least one network")
        return nets
    if isinstance(nets, Network) or not isinstance(nets, Sequence) or isinstance(nets, (str, bytes)):
        raise InvalidInput(f"nets: expected a sequence of edgegrad.Network, got {type(nets).__name__}")
    nets = list(nets)
    if not nets:
        raise InvalidInput("nets: expected at least one network")
    if set(map(type, nets)) != {Network}:
        for p, net in enumerate(nets):
            if not isinstance(net, Network):
                raise InvalidInput(f"nets[{p}]: expected an edgegrad.Network, got {type(net).__name__}")
    return nets


def is_per_network(values: Any) -> bool:
    """Whether ``values`` is a list or tuple of 2-D arrays (one per network) rather than one 2-D array of rows."""
    if not isinstance(values, (list, tuple)) or not values:
        return False
    first = values[0]
    if isinstance(first, np.ndarray):
        return first.ndim == 2
    return isinstance(first, (list, tuple)) and len(first) > 0 and isinstance(first[0], (list, tuple, np.ndarray))


def check_population(nets: Sequence[NetworkSizes] | PopulationColumns, inputs: Any, targets: Any, loss: str | None, reduction: str,
                     dtype: Any, per_example: bool) -> tuple[str, Rows, Rows | None]:
    """Validate a whole population request: (dtype name, inputs, targets); ``nets`` may be any NetworkSizes."""
    dtype = check_modes(loss, reduction, dtype, per_example)
    if loss is None and targets is not None:
        raise InvalidInput("targets: given without a loss (pass loss='mse', 'bce' or 'softmax_ce')")
    if loss is not None and targets is None:
        raise InvalidInput(f"targets: loss '{loss}' needs targets (B×K of each network)")
    n_in, n_out = _widths(nets)
    x = _rows(nets, inputs, "inputs", n_in, dtype)
    if loss is None:
        return dtype, x, None
    t = _rows(nets, targets, "targets", n_out, dtype)
    _check_pairs(x, t, loss, len(nets))
    return dtype, x, t


def _widths(nets: Sequence[NetworkSizes] | PopulationColumns) -> tuple[np.ndarray, np.ndarray]:
    """(inputs I, outputs K) of each network."""
    if isinstance(nets, PopulationColumns):
        return nets.n_inputs_each, nets.n_outputs_each
    return np.array([net.n_inputs for net in nets]), np.array([net.n_outputs for net in nets])


def _column_ids(nets: Sequence[NetworkSizes] | PopulationColumns, p: int, kind: str) -> tuple[str, ...]:
    """Network p's input ids (``kind`` "inputs") or output ids: the columns of its rows."""
    if isinstance(nets, PopulationColumns):
        return tuple(nets.input_ids(p) if kind == "inputs" else nets.output_ids(p))
    return tuple(nets[p].inputs if kind == "inputs" else nets[p].outputs)


def _check_pairs(x: Rows, t: Rows, loss: str, count: int) -> None:
    """Targets as many rows as inputs for every network, and in [0, 1] for bce and softmax_ce."""
    bad = np.flatnonzero(x.counts(count) != t.counts(count))
    if bad.size:
        p = int(bad[0])
        if x.each is not None and t.each is not None:
            raise InvalidInput(f"targets[{p}]: has {t.of(p).shape[0]} rows but inputs[{p}] has {x.of(p).shape[0]}")
        where = f"targets[{p}]" if t.each is not None else f"nets[{p}]: targets"
        what = f"inputs[{p}]" if x.each is not None else "inputs"
        raise InvalidInput(f"{where}: has {t.of(p).shape[0]} rows but {what} has {x.of(p).shape[0]}")
    if loss not in ("bce", "softmax_ce"):
        return
    arrays = t.arrays
    flat = np.concatenate([a.ravel() for a in arrays])
    if not ((flat < 0) | (flat > 1)).any():              # one pass over all of them; the loop only names one
        return
    for p, arr in enumerate(arrays):
        outside = np.argwhere((arr < 0) | (arr > 1))
        if outside.size:
            b, k = outside[0]
            name = "targets" if t.each is None else f"targets[{p}]"
            raise InvalidInput(f"{name}[{b}][{k}]: {loss} needs targets in [0, 1], got {arr[b, k]}")


def _rows(nets: Sequence[NetworkSizes] | PopulationColumns, values: Any, name: str, columns: np.ndarray, dtype: str) -> Rows:
    """Shared rows checked once (then each network's width), or one array per network checked together."""
    kind = "inputs" if name == "inputs" else "outputs"
    if not is_per_network(values):
        try:
            width = int(np.shape(values)[1]) if np.ndim(values) == 2 else -1
        except (TypeError, ValueError):
            width = -1
        bad = np.flatnonzero(columns != width)
        if bad.size and width >= 0 and (bad.size < columns.size or np.ptp(columns) > 0):  # some network fits
            p = int(bad[0])
            ids = _column_ids(nets, p, kind)
            try:
                check_array(values, name, int(columns[p]), ids)
            except InvalidInput as exc:
                raise InvalidInput(f"nets[{p}]: {exc}") from None
        ids = _column_ids(nets, 0, kind)
        arr = check_array(values, name, int(columns[0]), ids)
        if dtype == "float32":
            check_float32_range(arr, f"{name}[{{}}][{{}}]")
        return Rows(arr, None)
    if len(values) != len(nets):
        raise InvalidInput(f"{name}: expected {len(nets)} arrays (one per network), got {len(values)}")
    arrays = [v for v in values if isinstance(v, np.ndarray) and v.dtype == np.float64]
    fine = len(arrays) == len(values) and all(a.ndim == 2 and a.shape[1] == c and a.shape[0] > 0
                                              for a, c in zip(arrays, columns.tolist()))
    if fine:
        flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
        limit = np.finfo(np.float32).max if dtype == "float32" else np.inf
        fine = bool(np.isfinite(flat).all()) and (dtype != "float32" or bool((np.abs(flat) <= limit).all()))
    if fine:
        return Rows(None, arrays)
    checked = []
    for p, v in enumerate(values):
        ids = _column_ids(nets, p, kind)
        arr = check_array(v, f"{name}[{p}]", int(columns[p]), ids)
        if dtype == "float32":
            check_float32_range(arr, f"{name}[{p}][{{}}][{{}}]")
        checked.append(arr)
    return Rows(None, checked)
