"""A population's networks on the wire (``edgegrad.v1.Networks``) and in Redis, in columns.

``networks_to_proto`` is the client's: a handful of tensors for P networks. ``networks_from_proto`` is the
service's: tensor shapes and totals first (naming the field), then every network at once
(``model.population_checks``, naming ``nets[i]``). What the service stores is the topology alone
(``topology_blob``: no weights or biases, activations as indices into ACTIVATION_NAMES, with the levels the
checks found), which a worker reads back without checking again (``topology_from_blob``). A request's
``levels`` are never read: levels come only from the checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.activations import ACTIVATION_NAMES
from ..model.population import PopulationColumns
from ..model.population_checks import check_columns
from ..v1 import network_pb2
from .codec import array_from_tensor, tensor_from_array

__all__ = ["networks_to_proto", "networks_from_proto", "topology_blob", "topology_from_blob", "float_column"]

#: sizes beyond this are refused before anything is added up (no int64 sum can wrap)
_MAX_SIZE = 1 << 40


def networks_to_proto(cols: PopulationColumns, *, canonical: bool = False) -> network_pb2.Networks:
    """The columns as a Networks message (indices as uint8 or int32 where they fit). ``canonical``: the activation
    table is ACTIVATION_NAMES whole (as stored), else the names used, sorted."""
    if canonical:
        table, index = list(ACTIVATION_NAMES), cols.codes.astype(np.uint8)
    else:
        used = np.flatnonzero(np.bincount(cols.codes.astype(np.int64), minlength=len(ACTIVATION_NAMES)))
        order = sorted(used.tolist(), key=ACTIVATION_NAMES.__getitem__)
        lut = np.zeros(len(ACTIVATION_NAMES), dtype=np.uint8)
        lut[order] = np.arange(len(order))
        table, index = [ACTIVATION_NAMES[c] for c in order], lut[cols.codes]
    vertex = _index_type(int((cols.sizes[:, 0] + cols.sizes[:, 1]).max(initial=0)))
    ids = _index_type(len(cols.id_table))
    msg = network_pb2.Networks(
        sizes=tensor_from_array(cols.sizes, np.int64), id_table=cols.id_table,
        id_index=tensor_from_array(cols.id_index.astype(ids)), outputs=tensor_from_array(cols.outputs.astype(vertex)),
        activation_table=table, activation_index=tensor_from_array(index),
        src=tensor_from_array(cols.src.astype(vertex)), dst=tensor_from_array(cols.dst.astype(vertex)))
    if cols.weights.size or cols.biases.size:
        msg.weights.CopyFrom(tensor_from_array(cols.weights, np.float64))
        msg.biases.CopyFrom(tensor_from_array(cols.biases, np.float64))
    return msg


def _index_type(count: int) -> type:
    """The smallest integer type the wire takes (uint8, int32, int64) for indices below ``count``: a NEAT-size
    population's vertex and id indices travel and are stored as one byte each."""
    return np.uint8 if count <= 256 else np.int32 if count <= 2 ** 31 else np.int64


def networks_from_proto(msg: network_pb2.Networks, max_nodes: int = 0, max_edges: int = 0,
                        place: str = "networks", *, values: bool = True) -> PopulationColumns:
    """Decode and check a Networks message: InvalidInput naming the field for malformed tensors, ``nets[i]``
    for a network that breaks a rule (ResourceExhausted over a limit). ``values=False``: a topology alone
    (its weights and biases come apart; zeros stand in while it is checked)."""
    if not msg.HasField("sizes"):
        raise InvalidInput(f"{place}.sizes: missing")
    sizes = array_from_tensor(msg.sizes, f"{place}.sizes")
    if sizes.ndim != 2 or sizes.shape[1] != 4 or sizes.dtype.kind not in "iu":
        raise InvalidInput(f"{place}.sizes: expected int64 of shape (P, 4), got {sizes.dtype.name} of shape"
                           f" {list(sizes.shape)}")
    if sizes.shape[0] == 0:
        raise InvalidInput("nets: expected at least one network")
    sizes = sizes.astype(np.int64)
    if (sizes < 0).any() or (sizes > _MAX_SIZE).any():
        p, c = (int(i) for i in np.argwhere((sizes < 0) | (sizes > _MAX_SIZE))[0])
        raise InvalidInput(f"{place}.sizes[{p}][{c}]: {int(sizes[p, c])} is not a size")
    nodes, edges, outputs = (int(sizes[:, c].sum()) for c in (1, 2, 3))
    n_vertices = int(sizes[:, 0].sum()) + nodes
    table = list(msg.id_table)
    if len(set(table)) != len(table):
        seen: set[str] = set()
        i = next(i for i, v in enumerate(table) if v in seen or seen.add(v))  # type: ignore[func-returns-value]
        raise InvalidInput(f"{place}.id_table[{i}]: '{table[i]}' is in the table twice (each id once)")
    id_index = _ints(msg, "id_index", n_vertices, place)
    outs = _ints(msg, "outputs", outputs, place)
    acts = list(msg.activation_table)
    given = msg.HasField("activation_index") and math.prod(msg.activation_index.shape) > 0
    if given:
        index = _ints(msg, "activation_index", nodes, place)
        if (index < 0).any():
            raise InvalidInput(f"{place}.activation_index: negative index {int(index.min())}")
    else:   # as in Network: no activations given means identity everywhere
        acts, index = ["identity"], np.zeros(nodes, dtype=np.int64)
    cols = PopulationColumns(sizes, table, id_index, outs, np.zeros(0, dtype=np.int8),
                             _ints(msg, "src", edges, place), _ints(msg, "dst", edges, place),
                             float_column(msg.weights if msg.HasField("weights") else None, f"{place}.weights", edges)
                             if values else np.zeros(edges),
                             float_column(msg.biases if msg.HasField("biases") else None, f"{place}.biases", nodes)
                             if values else np.zeros(nodes))
    return check_columns(cols, acts, index, max_nodes, max_edges)


def _ints(msg: Any, name: str, size: int, place: str) -> np.ndarray:
    """An integer column of ``size`` entries, as int64 (a missing one is empty)."""
    arr = array_from_tensor(getattr(msg, name), f"{place}.{name}") if msg.HasField(name) \
        else np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"{place}.{name}.dtype: expected uint8, int32 or int64, got {arr.dtype.name}")
    if arr.ndim != 1 or arr.size != size:
        raise InvalidInput(f"{place}.{name}: expected {size} entries (shape ({size},): the sum over the networks),"
                           f" got shape {list(arr.shape)}")
    return arr.astype(np.int64)


def float_column(tensor: Any, place: str, size: int) -> np.ndarray:
    """A float64 column of ``size`` values (finiteness is checked with the networks); unset: zeros only when
    ``size`` is 0."""
    if tensor is None:
        if size:
            raise InvalidInput(f"{place}: missing ({size} values expected)")
        return np.zeros(0, dtype=np.float64)
    arr = array_from_tensor(tensor, place)
    if arr.dtype.kind != "f" or arr.ndim != 1 or arr.size != size:
        raise InvalidInput(f"{place}: expected {size} float64 values (shape ({size},)), got {arr.dtype.name}"
                           f" of shape {list(arr.shape)}")
    return arr.astype(np.float64, copy=False)


def topology_blob(cols: PopulationColumns) -> bytes:
    """What the service stores of checked columns: their topology, activations as ACTIVATION_NAMES indices, and
    their levels (the checks found them; ``topology_from_blob`` takes them as they are)."""
    msg = networks_to_proto(cols.topology(), canonical=True)
    levels = cols.levels
    msg.levels.CopyFrom(tensor_from_array(levels.astype(np.uint8 if levels.max(initial=0) < 256 else np.int32)))
    return msg.SerializeToString()


def topology_from_blob(blob: bytes) -> PopulationColumns:
    """Columns (no weights or biases) from ``topology_blob``'s bytes, trusted: they were checked when stored. Their
    levels come with them (computed when first needed from a blob stored without them)."""
    msg = network_pb2.Networks.FromString(blob)
    empty = np.zeros(0, dtype=np.float64)

    def column(name: str, dtype: Any) -> np.ndarray:
        return array_from_tensor(getattr(msg, name), name).astype(dtype)

    cols = PopulationColumns(column("sizes", np.int64).reshape(-1, 4), msg.id_table, column("id_index", np.int64),
                             column("outputs", np.int64), column("activation_index", np.int8),
                             column("src", np.int64), column("dst", np.int64), empty, empty)
    return cols.with_levels(column("levels", np.int64)) if msg.HasField("levels") else cols
