"""The quick road through an ``edgegrad.network/v1`` JSON document: typed decoding and whole-column checks.

``read_columns(raw)`` returns the network's columns exactly as ``Network.from_dict`` would build
them from ``json.loads``, or ``None`` as soon as anything about the document is not plainly valid.
It never raises and never words a message: on ``None`` the caller runs the exact checks, so every
message is theirs. The structural checks (edges into inputs, repeated edges, cycles) come after it
and are shared by every road.

Documents with a backslash anywhere take the exact road: without escapes every ``:`` byte is a
key/value separator or sits inside a string whose text we hold, which is how a key repeated within
one object (that a typed decoder would silently overwrite) is still caught: the document then has
more separators than the decoded objects have fields.
"""

from __future__ import annotations

import codecs
from operator import attrgetter
from typing import NamedTuple, cast

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from .activations import ACTIVATIONS
from .ids import IdIndex

__all__ = ["FORMAT", "Columns", "read_columns"]

FORMAT = "edgegrad.network/v1"
_ACTIVATION_NAMES = frozenset(ACTIVATIONS)
# the separator count below relies on no key, activation name or format name holding a ':'
assert not any(":" in name for name in (*_ACTIVATION_NAMES, FORMAT))


class _Edge(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    src: str
    dst: str
    weight: float


class _Node(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str
    activation: str | UnsetType = UNSET
    bias: float | UnsetType = UNSET


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    inputs: list[str]
    outputs: list[str]
    nodes: list[_Node]
    edges: list[_Edge] | UnsetType = UNSET
    format: str | UnsetType = UNSET


_DECODER = msgspec.json.Decoder(_Document)
_SRC, _DST, _WEIGHT = attrgetter("src"), attrgetter("dst"), attrgetter("weight")


class Columns(NamedTuple):
    """A network's fields, checked one by one (not yet as a graph)."""

    inputs: list[str]
    outputs: list[str]
    node_ids: list[str]
    activations: list[str]
    biases: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weights: np.ndarray


def read_columns(raw: bytes) -> Columns | None:
    """The columns of a plainly valid document, else ``None`` (then the exact checks must run)."""
    if raw.startswith(codecs.BOM_UTF8):      # what reading as utf-8-sig drops
        raw = raw[len(codecs.BOM_UTF8):]
    if b"\\" in raw:
        return None
    try:
        doc = _DECODER.decode(raw)
    except msgspec.DecodeError:               # also every type or unknown-key problem
        return None
    return _columns(doc, raw.count(b":"))


def _columns(doc: _Document, separators: int) -> Columns | None:
    if doc.format is not UNSET and doc.format != FORMAT:
        return None
    inputs, outputs, nodes = doc.inputs, doc.outputs, doc.nodes
    node_ids = [node.id for node in nodes]
    ids = inputs + node_ids
    id_set = set(ids)
    if len(id_set) != len(ids) or "" in id_set:
        return None
    output_set = set(outputs)
    if not outputs or len(output_set) != len(outputs) or not output_set <= set(node_ids):
        return None
    activations = [node.activation for node in nodes]
    unnamed = sum(a is UNSET for a in activations)
    if unnamed:
        activations = ["identity" if a is UNSET else a for a in activations]
    if not _ACTIVATION_NAMES.issuperset(activations):
        return None
    bias_values = [node.bias for node in nodes]
    unbiased = sum(b is UNSET for b in bias_values)
    if unbiased:
        bias_values = [0.0 if b is UNSET else b for b in bias_values]
    biases = np.array(bias_values, dtype=np.float64)
    edges = [] if doc.edges is UNSET else doc.edges
    count = len(edges)
    id_index = IdIndex(ids)
    src = id_index.positions(list(map(_SRC, edges)))
    dst = id_index.positions(list(map(_DST, edges)))
    if src is None or dst is None:            # an edge naming an unknown node
        return None
    weights = np.fromiter(map(_WEIGHT, edges), dtype=np.float64, count=count)
    if not (np.isfinite(biases).all() and np.isfinite(weights).all()):
        return None
    fields = (3 + (doc.format is not UNSET) + (doc.edges is not UNSET)
              + 3 * len(nodes) - unnamed - unbiased + 3 * count)
    if separators != fields + _colons_in_strings(ids, outputs, src, dst):
        return None                           # some object repeats a key
    return Columns(inputs, outputs, node_ids, cast(list[str], activations),  # no UNSET left: replaced above
                   biases, src, dst, weights)


def _colons_in_strings(ids: list[str], outputs: list[str], src: np.ndarray, dst: np.ndarray) -> int:
    """``:`` characters inside the document's id strings (every other string is known to hold none)."""
    if ":" not in "".join(ids):
        return 0
    per_vertex = np.array([v.count(":") for v in ids], dtype=np.int64)
    # every id once where it is declared, then in outputs and at both ends of its edges
    in_outputs = sum(v.count(":") for v in outputs)
    return int(per_vertex.sum() + in_outputs + per_vertex[src].sum() + per_vertex[dst].sum())
