"""``PopulationColumns``: many networks as one set of columns, each network's arrays one after another.

What ``Network`` holds per network (ids, activations, biases, edges, weights, outputs), concatenated
over the networks with their sizes, so a population is built, sent, stored, checked and packed with a
handful of numpy operations whatever its size. Within network p vertices are numbered as in
``Network`` (its inputs, then its nodes); ``src``/``dst`` use that numbering, ``outputs`` index its
nodes. Ids are interned: ``id_index`` points into ``id_table``. ``network(p)`` (and ``cols[p]``) builds
network p as a ``Network`` where one is needed (a message naming its nodes, the rare per-network redo).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from .activations import ACTIVATION_NAMES
from .graph import edge_keys, kahn_levels
from .network import Network

__all__ = ["PopulationColumns", "offsets_of", "intern"]

_CODE = {name: code for code, name in enumerate(ACTIVATION_NAMES)}


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """(P+1,) int64: where each of P consecutive parts of ``counts`` elements starts, and the total last."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def intern(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(the distinct values in first-seen order, each value's index into them), in C loops (map, dict)."""
    table = list(dict.fromkeys(values))
    position = {v: i for i, v in enumerate(table)}
    return table, np.fromiter(map(position.__getitem__, values), dtype=np.int64, count=len(values))


@dataclass(frozen=True, eq=False)
class PopulationColumns:
    """P networks in columns (see the module); ``weights``/``biases`` may be empty for a topology alone."""

    sizes: np.ndarray        #: int64 (P, 4): inputs I, nodes N, edges E, outputs K of each network
    id_table: Sequence[str]  #: distinct ids
    id_index: np.ndarray     #: int64 (ΣI+N,): each network's input ids, then its node ids, into ``id_table``
    outputs: np.ndarray      #: int64 (ΣK,): each output's position among its network's nodes
    codes: np.ndarray        #: int8 (ΣN,): each node's activation, as an index into ACTIVATION_NAMES
    src: np.ndarray          #: int64 (ΣE,): source vertex, in its own network's numbering
    dst: np.ndarray          #: int64 (ΣE,): target vertex likewise
    weights: np.ndarray      #: float64 (ΣE,)
    biases: np.ndarray       #: float64 (ΣN,)

    # ------------------------------------------------------------ building
    @classmethod
    def from_networks(cls, nets: Sequence[Network]) -> PopulationColumns:
        """The columns of these networks (one list comprehension per attribute, no loop per node or edge)."""
        sizes = np.array([(n.n_inputs, n.n_nodes, n.src.size, n.output_index.size) for n in nets],
                         dtype=np.int64).reshape(-1, 4)
        ids = list(itertools.chain.from_iterable(itertools.chain.from_iterable((n.inputs, n.node_ids) for n in nets)))
        table, index = intern(ids)
        codes = np.fromiter(map(_CODE.__getitem__, itertools.chain.from_iterable(n.activations for n in nets)),
                            dtype=np.int8, count=int(sizes[:, 1].sum()))
        return cls(sizes, table, index, _concat([n.output_index for n in nets], np.int64), codes,
                   _concat([n.src for n in nets], np.int64), _concat([n.dst for n in nets], np.int64),
                   _concat([n.weights for n in nets], np.float64), _concat([n.biases for n in nets], np.float64))

    def with_values(self, weights: np.ndarray, biases: np.ndarray) -> PopulationColumns:
        """The same topology with other weights (ΣE) and biases (ΣN), checked by the caller (levels kept)."""
        return replace(self, weights=weights, biases=biases)._primed(self.known_levels())

    def topology(self) -> PopulationColumns:
        """The same columns without weights and biases (levels kept)."""
        empty = np.zeros(0, dtype=np.float64)
        return replace(self, weights=empty, biases=empty)._primed(self.known_levels())

    def with_levels(self, levels: np.ndarray) -> PopulationColumns:
        """The same columns with ``levels`` (ΣI+N,) as their ``levels``, trusted: the checks' (or what the service
        stored after checking), never a client's."""
        if levels.shape != (int(self.vert_off[-1]),):
            raise ValueError(f"with_levels: expected {int(self.vert_off[-1])} levels, got shape {levels.shape}")
        return replace(self)._primed(levels)

    def known_levels(self) -> np.ndarray | None:
        """The levels where already known (given or computed), else None: nothing is computed."""
        return self.__dict__.get("levels")

    def _primed(self, levels: np.ndarray | None) -> PopulationColumns:
        """Self (a fresh object) with ``levels`` cached as ``levels`` would cache them (None: left unknown)."""
        if levels is not None:
            self.__dict__["levels"] = levels
        return self

    # ------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def n_inputs_each(self) -> np.ndarray:
        """(P,) inputs I of each network."""
        return self.sizes[:, 0]

    @property
    def n_nodes_each(self) -> np.ndarray:
        """(P,) computed nodes N of each network."""
        return self.sizes[:, 1]

    @property
    def n_edges_each(self) -> np.ndarray:
        """(P,) edges E of each network."""
        return self.sizes[:, 2]

    @property
    def n_outputs_each(self) -> np.ndarray:
        """(P,) outputs K of each network."""
        return self.sizes[:, 3]

    @cached_property
    def vert_off(self) -> np.ndarray:
        """(P+1,) first vertex (in ``id_index``) of each network."""
        return offsets_of(self.sizes[:, 0] + self.sizes[:, 1])

    @cached_property
    def node_off(self) -> np.ndarray:
        """(P+1,) first node (in ``codes``, ``biases``) of each network."""
        return offsets_of(self.sizes[:, 1])

    @cached_property
    def edge_off(self) -> np.ndarray:
        """(P+1,) first edge (in ``src``, ``dst``, ``weights``) of each network."""
        return offsets_of(self.sizes[:, 2])

    @cached_property
    def out_off(self) -> np.ndarray:
        """(P+1,) first output (in ``outputs``) of each network."""
        return offsets_of(self.sizes[:, 3])

    @cached_property
    def levels(self) -> np.ndarray:
        """(ΣI+N,) topological level of every vertex in its own network (inputs 0), as ``Network.levels``;
        every network at once. The networks must be acyclic (checked ones are). Checked columns have them
        already (``with_levels``), and so do their topology, slices and columns with other values."""
        level, indegree, done = graph_levels(self)
        if done < level.size:
            raise ValueError("population_levels: a network has a cycle")
        return level

    def slice(self, lo: int, hi: int) -> PopulationColumns:
        """Networks [lo, hi) (views of these columns; their levels too where known)."""
        v, n, e, k = self.vert_off, self.node_off, self.edge_off, self.out_off
        values = self.weights.size or self.biases.size
        part = PopulationColumns(self.sizes[lo:hi], self.id_table, self.id_index[v[lo]:v[hi]],
                                 self.outputs[k[lo]:k[hi]], self.codes[n[lo]:n[hi]], self.src[e[lo]:e[hi]],
                                 self.dst[e[lo]:e[hi]], self.weights[e[lo]:e[hi]] if values else self.weights,
                                 self.biases[n[lo]:n[hi]] if values else self.biases)
        levels = self.known_levels()
        return part._primed(None if levels is None else levels[v[lo]:v[hi]])

    def content_hash(self) -> str:
        """SHA-256 of the topology (sizes, ids, outputs, activations, edges; not weights or biases): the name the
        service stores a population's topology under. Equal columns hash equal on every side."""
        h = hashlib.sha256(b"edgegrad.population-topology/v1")
        lengths = np.fromiter(map(len, self.id_table), dtype=np.int64, count=len(self.id_table))
        for arr, dtype in ((self.sizes, "<i8"), (lengths, "<i8"), (self.id_index, "<i8"), (self.outputs, "<i8"),
                           (self.codes, "i1"), (self.src, "<i8"), (self.dst, "<i8")):
            h.update(len(arr).to_bytes(8, "little"))
            h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
        h.update("".join(self.id_table).encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    # ------------------------------------------------------------ one network
    def vertex_ids(self, p: int) -> list[str]:
        """Network p's ids: its inputs, then its nodes."""
        table = self.id_table
        return [table[i] for i in self.id_index[self.vert_off[p]:self.vert_off[p + 1]].tolist()]

    def input_ids(self, p: int) -> list[str]:
        """Network p's input ids."""
        table, start = self.id_table, int(self.vert_off[p])
        return [table[i] for i in self.id_index[start:start + int(self.sizes[p, 0])].tolist()]

    def output_ids(self, p: int) -> list[str]:
        """Network p's output ids."""
        table, first = self.id_table, int(self.vert_off[p] + self.sizes[p, 0])
        index = self.id_index[first + self.outputs[self.out_off[p]:self.out_off[p + 1]]]
        return [table[i] for i in index.tolist()]

    def network(self, p: int) -> Network:
        """Network p as a ``Network`` (for columns that were checked: built without checking again)."""
        n_in = int(self.sizes[p, 0])
        ids = self.vertex_ids(p)
        nodes = ids[n_in:]
        n, e, k = self.node_off, self.edge_off, self.out_off
        outputs = [nodes[i] for i in self.outputs[k[p]:k[p + 1]].tolist()]
        activations = [ACTIVATION_NAMES[c] for c in self.codes[n[p]:n[p + 1]].tolist()]
        return Network(ids[:n_in], outputs, nodes, activations, self.biases[n[p]:n[p + 1]],
                       self.src[e[p]:e[p + 1]], self.dst[e[p]:e[p + 1]], self.weights[e[p]:e[p + 1]], _checked=True)

    def __getitem__(self, p: int) -> Network:
        return self.network(p)

    def __iter__(self) -> Any:
        return (self.network(p) for p in range(len(self)))

    def networks(self) -> list[Network]:
        """Every network as a ``Network`` (one at a time: for the paths that need objects)."""
        return list(self)


def graph_levels(cols: PopulationColumns, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Kahn's walk over every network at once: (levels, in-degrees left, vertices reached); see ``kahn_levels``.
    Edges must index their own network's vertices; ``keys``: their ``edge_keys`` in the concatenated numbering,
    when known."""
    count = len(cols)
    widths = cols.sizes[:, 0] + cols.sizes[:, 1]
    local = np.arange(int(cols.vert_off[-1])) - np.repeat(cols.vert_off[:-1], widths)
    level = (local >= np.repeat(cols.sizes[:, 0], widths)).astype(np.int64)   # inputs 0, nodes 1
    base = np.repeat(cols.vert_off[:-1], cols.sizes[:, 2]) if count else np.zeros(0, dtype=np.int64)
    g_src, g_dst = base + cols.src, base + cols.dst
    indegree, done = kahn_levels(g_src, g_dst, level, edge_keys(g_src, g_dst, level.size) if keys is None else keys)
    return level, indegree, done


def _concat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype=dtype)
