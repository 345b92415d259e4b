"""Checks of a network's fields, each failure an InvalidInput naming the place (``nodes[3].bias``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .activations import ACTIVATION_NAMES, ACTIVATIONS
from .ids import IdIndex

__all__ = ["kind_of", "JsonObject", "check_keys", "as_list", "check_id", "id_list", "all_str", "check_unique",
           "check_activation", "finite_number", "lookup_vertex", "check_outputs", "float_array", "vertex_array"]


def kind_of(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (dict, "an object"), (list, "a list"), (str, "a string"),
                       (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


class JsonObject(dict):
    """A parsed JSON object that remembers the first key it saw twice (json keeps the last silently)."""

    duplicate: str | None = None

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> JsonObject:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            obj.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return obj


def check_keys(obj: dict, allowed: Iterable[str], place: str) -> None:
    duplicate = getattr(obj, "duplicate", None)
    if duplicate is not None:
        raise InvalidInput(f"{place}: key '{duplicate}' appears twice")
    for key in obj:
        if key not in allowed:
            raise InvalidInput(f"{place}: unknown key '{key}' (allowed: {', '.join(allowed)})")


def as_list(value: Any, place: str) -> list:
    if not isinstance(value, list):
        raise InvalidInput(f"{place}: expected a list, got {kind_of(value)}")
    return value


def check_id(value: Any, place: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{place}: expected a non-empty string id, got {json.dumps(value) if _jsonable(value) else kind_of(value)}")
    return value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None)))


def id_list(values: Any, place: str) -> list[str]:
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise InvalidInput(f"{place}: expected a list, got {kind_of(values)}")
    if all_str(values) and "" not in values:
        return list(values)
    return [check_id(v, f"{place}[{i}]") for i, v in enumerate(values)]


def all_str(values: Sequence[Any]) -> bool:
    """Every item is exactly a ``str`` (subclasses take the careful road)."""
    return all(t is str for t in set(map(type, values)))


def check_unique(inputs: list[str], node_ids: list[str]) -> None:
    if len(set(inputs).union(node_ids)) == len(inputs) + len(node_ids):
        return
    seen: set[str] = set()
    for place, ids in (("inputs", inputs), ("nodes", node_ids)):
        for i, v in enumerate(ids):
            if v in seen:
                where = f"{place}[{i}]" if place == "inputs" else f"nodes[{i}].id"
                raise InvalidInput(f"{where}: duplicate id '{v}'")
            seen.add(v)


def check_activation(name: str, place: str) -> None:
    if name not in ACTIVATIONS:
        raise InvalidInput(f"{place}: unknown activation '{name}' (expected one of {', '.join(ACTIVATION_NAMES)})")


def finite_number(value: Any, place: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInput(f"{place}: expected a number, got {kind_of(value)}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float64
        raise InvalidInput(f"{place}: must be finite, got an integer too large for float64") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{place}: must be finite, got {value}")
    return value


def lookup_vertex(value: Any, index: dict[str, int], place: str) -> int:
    if not isinstance(value, str):
        raise InvalidInput(f"{place}: expected a node id string, got {kind_of(value)}")
    try:
        return index[value]
    except KeyError:
        raise InvalidInput(f"{place}: unknown node '{value}'") from None


def check_outputs(outputs: Any, inputs: set[str], nodes: set[str]) -> list[str]:
    outputs = id_list(outputs, "outputs")
    if not outputs:
        raise InvalidInput("outputs: must name at least one node")
    seen: set[str] = set()
    for i, v in enumerate(outputs):
        if v in inputs:
            raise InvalidInput(f"outputs[{i}]: '{v}' is an input; outputs must be computed nodes")
        if v not in nodes:
            raise InvalidInput(f"outputs[{i}]: unknown node '{v}'")
        if v in seen:
            raise InvalidInput(f"outputs[{i}]: duplicate output '{v}'")
        seen.add(v)
    return outputs


def float_array(values: Any, name: str, size: int, place: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: expected numbers") from None
    if arr.size != size:
        raise InvalidInput(f"{name}: expected {size} entries, got {arr.size}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidInput(f"{place.format(int(bad[0]))}: must be finite, got {arr[bad[0]]}")
    return arr


def vertex_array(values: Any, name: str, ids: list[str], id_index: Callable[[], IdIndex]) -> np.ndarray:
    if type(values) in (list, tuple) and values and isinstance(values[0], str):
        found = id_index().positions(values)   # what np.asarray(values) then the lookups give
        if found is not None:
            return found
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= len(ids)))
        if bad.size:
            e = int(bad[0])
            raise InvalidInput(f"edges[{e}].{name}: index {arr[e]} out of range (0..{len(ids) - 1})")
        return arr
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "U":
        found = id_index().positions(arr)
        if found is not None:
            return found
    index = {v: i for i, v in enumerate(ids)}
    out = np.empty(arr.size, dtype=np.int64)
    for e, v in enumerate(arr.tolist()):
        out[e] = lookup_vertex(v, index, f"edges[{e}].{name}")
    return out
