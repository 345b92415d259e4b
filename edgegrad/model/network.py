"""The network model: the ``edgegrad.network/v1`` JSON format, a compact .npz form, validation (checks in ``checks``)."""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .activations import ACTIVATION_NAMES, activation_code
from .checks import (
    JsonObject,
    as_list,
    check_activation,
    check_id,
    check_keys,
    check_outputs,
    check_unique,
    finite_number,
    float_array,
    id_list,
    kind_of,
    lookup_vertex,
    vertex_array,
)
from .converters import converter
from .graph import check_edges, topological_levels
from .ids import IdIndex
from .network_json import FORMAT, Columns, read_columns

__all__ = ["Network", "FORMAT"]

_TOP_KEYS = ("format", "inputs", "outputs", "nodes", "edges")
_NODE_KEYS = ("id", "activation", "bias")
_EDGE_KEYS = ("src", "dst", "weight")
_ACTIVATION_SET = frozenset(ACTIVATION_NAMES)


class Network:
    """A validated DAG network held as arrays: ids once, then index and value arrays.

    Vertices are numbered inputs first, then computed nodes, both in file order; ``src`` and
    ``dst`` index that numbering. Instances are immutable once built.
    """

    __slots__ = ("inputs", "outputs", "node_ids", "activations", "biases", "src", "dst", "weights",
                 "output_index", "levels", "__dict__")

    def __init__(self, inputs: Sequence[str], outputs: Sequence[str], node_ids: Sequence[str],
                 activations: Sequence[str], biases: np.ndarray, src: np.ndarray, dst: np.ndarray,
                 weights: np.ndarray, *, _checked: bool = False, _edge_keys: np.ndarray | None = None) -> None:
        if not _checked:
            raise TypeError("use Network.from_dict, Network.from_arrays or Network.load")
        self.inputs: tuple[str, ...] = tuple(inputs)
        self.outputs: tuple[str, ...] = tuple(outputs)
        self.node_ids: tuple[str, ...] = tuple(node_ids)
        self.activations: tuple[str, ...] = tuple(activations)
        self.biases: np.ndarray = _frozen(biases, np.float64)
        self.src: np.ndarray = _frozen(src, np.int64)
        self.dst: np.ndarray = _frozen(dst, np.int64)
        self.weights: np.ndarray = _frozen(weights, np.float64)
        #: position of each output among the computed nodes
        self.output_index: np.ndarray = _frozen(_positions_of(self.outputs, self.node_ids), np.int64)
        ids = self.inputs + self.node_ids
        #: topological level of every vertex (inputs 0); raises on a cycle
        self.levels: np.ndarray = _frozen(
            topological_levels(self.src, self.dst, len(ids), len(self.inputs), ids, _edge_keys), np.int64)

    # ------------------------------------------------------------------ sizes
    @property
    def n_inputs(self) -> int:
        """Number of input nodes (I)."""
        return len(self.inputs)

    @property
    def n_nodes(self) -> int:
        """Number of computed nodes (N)."""
        return len(self.node_ids)

    @property
    def n_outputs(self) -> int:
        """Number of outputs (K)."""
        return len(self.outputs)

    @property
    def n_edges(self) -> int:
        """Number of edges (E)."""
        return int(self.src.size)

    @cached_property
    def vertex_ids(self) -> tuple[str, ...]:
        """All ids in vertex numbering: inputs, then computed nodes."""
        return self.inputs + self.node_ids

    def edge_pairs(self) -> list[list[str]]:
        """``[[src, dst], ...]`` in file order."""
        ids = self.vertex_ids
        return [[ids[s], ids[d]] for s, d in zip(self.src.tolist(), self.dst.tolist())]

    @cached_property
    def widest_level(self) -> int:
        """Computed nodes in the network's widest topological level."""
        return int(np.bincount(self.levels[self.n_inputs:]).max())

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the network's content; equal networks hash equal, whatever their source."""
        h = hashlib.sha256(FORMAT.encode())
        header = json.dumps([self.inputs, self.outputs, self.node_ids, self.activations],
                            separators=(",", ":")).encode()
        h.update(len(header).to_bytes(8, "little"))
        h.update(header)
        for arr, dtype in ((self.biases, "<f8"), (self.src, "<i8"), (self.dst, "<i8"), (self.weights, "<f8")):
            h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        return (f"Network(inputs={self.n_inputs}, nodes={self.n_nodes}, edges={self.n_edges}, "
                f"outputs={self.n_outputs}, hash={self.content_hash[:12]})")

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_arrays(cls, inputs: Sequence[str], outputs: Sequence[str], node_ids: Sequence[str],
                    activations: Sequence[str] | str | None, biases: Any, src: Any, dst: Any,
                    weights: Any) -> Network:
        """Build from columns; ``src``/``dst`` are ids or integer indices into ``inputs + node_ids``."""
        inputs = id_list(inputs, "inputs")
        node_ids = id_list(node_ids, "nodes")
        check_unique(inputs, node_ids)
        n = len(node_ids)
        if activations is None or isinstance(activations, str):
            activations = [activations or "identity"] * n
        activations = list(map(str, activations))
        if len(activations) != n:
            raise InvalidInput(f"activations: expected {n} entries (one per node), got {len(activations)}")
        if not _ACTIVATION_SET.issuperset(activations):
            for i, a in enumerate(activations):
                check_activation(a, f"nodes[{i}].activation")
        biases = float_array(np.zeros(n) if biases is None else biases, "biases", n, "nodes[{}].bias")
        ids = inputs + node_ids
        id_index = functools.cache(lambda: IdIndex(ids))      # only built for string ids
        src = vertex_array(src, "src", ids, id_index)
        dst = vertex_array(dst, "dst", ids, id_index)
        if src.shape != dst.shape:
            raise InvalidInput(f"edges: src has {src.size} entries but dst has {dst.size}")
        weights = float_array(weights, "weights", src.size, "edges[{}].weight")
        outputs = check_outputs(outputs, set(inputs), set(node_ids))
        keys = check_edges(src, dst, len(inputs), ids)
        return cls(inputs, outputs, node_ids, activations, biases, src, dst, weights, _checked=True,
                   _edge_keys=keys)

    def with_parameters(self, weights: Any = None, biases: Any = None) -> Network:
        """This network with new weights (E, file order) and/or biases (N), the topology shared, not rebuilt."""
        out = copy.copy(self)
        out.__dict__.pop("content_hash", None)
        if weights is not None:
            out.weights = _frozen(float_array(weights, "weights", self.n_edges, "edges[{}].weight"), np.float64)
        if biases is not None:
            out.biases = _frozen(float_array(biases, "biases", self.n_nodes, "nodes[{}].bias"), np.float64)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Network:
        """Build from the parsed ``edgegrad.network/v1`` JSON object, validating every field."""
        if not isinstance(data, dict):
            raise InvalidInput(f"network: expected a JSON object, got {kind_of(data)}")
        check_keys(data, _TOP_KEYS, "network")
        if "format" in data and data["format"] != FORMAT:
            raise InvalidInput(f"format: expected '{FORMAT}', got {json.dumps(data['format'])}")
        for key in ("inputs", "outputs", "nodes"):
            if key not in data:
                raise InvalidInput(f"{key}: missing")
        inputs = id_list(data["inputs"], "inputs")
        nodes = as_list(data["nodes"], "nodes")
        node_ids, activations, biases = [], [], []
        for i, node in enumerate(nodes):
            place = f"nodes[{i}]"
            if not isinstance(node, dict):
                raise InvalidInput(f"{place}: expected an object, got {kind_of(node)}")
            check_keys(node, _NODE_KEYS, place)
            if "id" not in node:
                raise InvalidInput(f"{place}.id: missing")
            node_ids.append(check_id(node["id"], f"{place}.id"))
            activation = node.get("activation", "identity")
            if not isinstance(activation, str):
                raise InvalidInput(f"{place}.activation: expected a string, got {kind_of(activation)}")
            check_activation(activation, f"{place}.activation")
            activations.append(activation)
            biases.append(finite_number(node.get("bias", 0.0), f"{place}.bias"))
        check_unique(inputs, node_ids)
        index = {v: i for i, v in enumerate(inputs + node_ids)}
        edges = as_list(data.get("edges", []), "edges")
        src = np.empty(len(edges), dtype=np.int64)
        dst = np.empty(len(edges), dtype=np.int64)
        weights = np.empty(len(edges), dtype=np.float64)
        for e, edge in enumerate(edges):
            place = f"edges[{e}]"
            if not isinstance(edge, dict):
                raise InvalidInput(f"{place}: expected an object, got {kind_of(edge)}")
            check_keys(edge, _EDGE_KEYS, place)
            for key in _EDGE_KEYS:
                if key not in edge:
                    raise InvalidInput(f"{place}.{key}: missing")
            src[e] = lookup_vertex(edge["src"], index, f"{place}.src")
            dst[e] = lookup_vertex(edge["dst"], index, f"{place}.dst")
            weights[e] = finite_number(edge["weight"], f"{place}.weight")
        outputs = check_outputs(data["outputs"], set(inputs), set(node_ids))
        keys = check_edges(src, dst, len(inputs), inputs + node_ids)
        return cls(inputs, outputs, node_ids, activations, np.array(biases, dtype=np.float64),
                   src, dst, weights, _checked=True, _edge_keys=keys)

    def to_dict(self) -> dict[str, Any]:
        """The ``edgegrad.network/v1`` JSON object; ``from_dict(to_dict())`` is an identity."""
        ids = self.vertex_ids
        return {
            "format": FORMAT,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "nodes": [{"id": v, "activation": a, "bias": b}
                      for v, a, b in zip(self.node_ids, self.activations, self.biases.tolist())],
            "edges": [{"src": ids[s], "dst": ids[d], "weight": w}
                      for s, d, w in zip(self.src.tolist(), self.dst.tolist(), self.weights.tolist())],
        }

    # ------------------------- other libraries (edgegrad.interop registers these, see model/converters.py)
    @classmethod
    def from_layers(cls, weights: Sequence[Any], biases: Sequence[Any] | None = None,
                    activations: Sequence[str] | str | None = None) -> Network:
        """A layered network from out×in weight matrices, (out,) biases and one activation a layer."""
        return converter("from_layers")(weights, biases, activations)

    @classmethod
    def from_torch(cls, module: Any) -> Network:
        """The network of a ``torch.nn.Sequential`` of Linear layers and activations (extra ``torch``)."""
        return converter("from_torch")(module)

    @classmethod
    def from_neat(cls, genome: Any, config: Any) -> Network:
        """The network neat-python's FeedForwardNetwork runs for ``genome`` (extra ``neat``)."""
        return converter("from_neat")(genome, config)

    @classmethod
    def from_networkx(cls, graph: Any) -> Network:
        """The network a networkx DiGraph describes (extra ``networkx``)."""
        return converter("from_networkx")(graph)

    def to_networkx(self) -> Any:
        """This network as a networkx DiGraph (extra ``networkx``)."""
        return converter("to_networkx")(self)

    # -------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Network:
        """Read a ``.json`` file (the contract's format) or a ``.npz`` file written by ``save``."""
        path = os.fspath(path)
        try:
            if path.endswith(".npz"):
                return cls._load_npz(path)
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read ({exc.strerror or exc})") from None
        columns = read_columns(raw)
        if columns is not None:
            return cls._from_columns(columns)
        try:  # the exact road, reading the bytes as a utf-8-sig text file would
            text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig").read()
            data = json.loads(text, object_pairs_hook=JsonObject.from_pairs)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def _from_columns(cls, c: Columns) -> Network:
        """Finish a network whose fields ``read_columns`` checked: the graph checks every road shares."""
        keys = check_edges(c.src, c.dst, len(c.inputs), c.inputs + c.node_ids)
        return cls(c.inputs, c.outputs, c.node_ids, c.activations, c.biases, c.src, c.dst, c.weights,
                   _checked=True, _edge_keys=keys)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, or as compact ``.npz`` when the name ends in ``.npz``."""
        path = os.fspath(path)
        if path.endswith(".npz"):
            np.savez_compressed(
                path, format=np.array(FORMAT), inputs=np.array(self.inputs, dtype=str),
                outputs=np.array(self.outputs, dtype=str), node_ids=np.array(self.node_ids, dtype=str),
                activations=np.array([activation_code(a) for a in self.activations], dtype=np.uint8),
                biases=self.biases, src=self.src, dst=self.dst, weights=self.weights)
            return
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")

    @classmethod
    def _load_npz(cls, path: str) -> Network:
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise InvalidInput(f"format: expected '{FORMAT}', got '{z['format']}'")
                codes = z["activations"].astype(np.int64)
                if codes.size and (codes.min() < 0 or codes.max() >= len(ACTIVATION_NAMES)):
                    raise InvalidInput(f"{path}: activation codes out of range")
                return cls.from_arrays(z["inputs"].tolist(), z["outputs"].tolist(), z["node_ids"].tolist(),
                                       [ACTIVATION_NAMES[c] for c in codes.tolist()], z["biases"],
                                       z["src"], z["dst"], z["weights"])
        except InvalidInput:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"{path}: not an edgegrad .npz network ({exc or type(exc).__name__})") from None


# ------------------------------------------------------------------ helpers
def _frozen(values: Any, dtype: Any) -> np.ndarray:
    arr = np.array(values, dtype=dtype)
    arr.setflags(write=False)
    return arr


def _positions_of(wanted: Sequence[str], ids: Sequence[str]) -> list[int]:
    """Where each of a few wanted ids sits (a scan in C each), or by one dict for many."""
    if len(wanted) <= 64:
        return [ids.index(v) for v in wanted]
    index = {v: i for i, v in enumerate(ids)}
    return [index[v] for v in wanted]
