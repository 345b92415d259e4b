"""Pack a slab of networks into the population kernel's arrays, vectorised over the concatenated networks.

``pack`` gathers each network's arrays once (list comprehensions over attributes, no loop per node or
edge), then works out every network's plan order (live nodes by level, activation, file position;
dead ones last), its in- and out-edge CSR and its file-order maps with numpy over all networks at
once. What depends on the topology alone is cached (``Topology``, keyed by a hash of the topology
arrays); a new call with the same topologies and other weights only gathers its weights and biases.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput
from ..model.activations import ACTIVATION_NAMES
from ..model.network import Network
from ..model.population import PopulationColumns
from .batch import check_float32_range

__all__ = ["Topology", "Packed", "pack", "topology_cache_stats", "clear_topology_cache", "TOPOLOGY_CACHE_BYTES"]

#: bytes of packed topologies kept between calls (least recently used dropped first)
TOPOLOGY_CACHE_BYTES = 128 << 20
_CODE = {name: code for code, name in enumerate(ACTIVATION_NAMES)}


@dataclass(frozen=True)
class Topology:
    """What the kernel reads that depends on the networks' topology alone (per network, then concatenated)."""

    n_in: np.ndarray          #: (P,) inputs I of each network
    n_nodes: np.ndarray       #: (P,) computed nodes N
    n_live: np.ndarray        #: (P,) nodes that reach an output (plan rows [0, n_live))
    n_out: np.ndarray         #: (P,) outputs K
    n_edges: np.ndarray       #: (P,) edges E
    node_off: np.ndarray      #: (P+1,) first global node row of each network
    vert_off: np.ndarray      #: (P+1,) first global vertex (inputs, then node rows) of each network
    edge_off: np.ndarray      #: (P+1,) first global edge (file order) of each network
    out_off: np.ndarray       #: (P+1,) first output of each network
    in_ptr: np.ndarray        #: (ΣN+1,) global node row -> first in-edge (plan order)
    in_src: np.ndarray        #: local activation row of each in-edge's source
    in_take: np.ndarray       #: global file edge of each in-edge (to gather weights)
    out_ptr: np.ndarray       #: (ΣV+1,) global vertex row -> first out-edge (live destinations only)
    out_dst: np.ndarray       #: local node row of each out-edge's destination
    out_take: np.ndarray      #: global file edge of each out-edge
    out_k: np.ndarray         #: (ΣN,) per global node row: the output it is, or -1
    out_rows: np.ndarray      #: (ΣK,) local node row of each output
    f_src: np.ndarray         #: (ΣE,) file order: local activation row of the source
    f_dst: np.ndarray         #: (ΣE,) file order: local node row of the destination
    node_row: np.ndarray      #: (ΣN,) file node -> local node row
    codes: np.ndarray         #: (ΣN,) activation code per global node row
    bias_take: np.ndarray     #: (ΣN,) global file node of each global node row (to gather biases)
    row_level: np.ndarray     #: (ΣN,) topological level of each global node row (dead rows: -1)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(getattr(self, name).nbytes for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class Packed:
    """A topology with this call's weights and biases in the kernel's dtype."""

    topology: Topology
    in_w: np.ndarray
    out_w: np.ndarray
    bias: np.ndarray


_cache: OrderedDict[bytes, Topology] = OrderedDict()
_lock = threading.Lock()
_stats = [0, 0]  #: hits, misses


def topology_cache_stats() -> tuple[int, int, int]:
    """(hits, misses, topologies held) of the population topology cache since the process started."""
    with _lock:
        return _stats[0], _stats[1], len(_cache)


def clear_topology_cache() -> None:
    """Forget every cached population topology."""
    with _lock:
        _cache.clear()


def pack(nets: Sequence[Network] | PopulationColumns, dtype: np.dtype, numbers: Sequence[int] | None = None) -> Packed:
    """The kernel's arrays for ``nets`` (a slab: networks, or columns taken as they are), the topology cached
    by content (the same for both forms).

    float32: a weight or bias beyond its range is InvalidInput naming ``nets[i]``, ``i`` the network's
    number in the call (``numbers``, default its position here).
    """
    weights: np.ndarray | None
    biases: np.ndarray | None
    if isinstance(nets, PopulationColumns):
        sizes = np.ascontiguousarray(nets.sizes[:, [0, 1, 3, 2]])   # I, N, K, E
        src, dst, codes, outputs = nets.src, nets.dst, nets.codes, nets.outputs
        weights, biases = nets.weights, nets.biases
    else:
        sizes = np.array([(n.n_inputs, n.n_nodes, n.output_index.size, n.src.size) for n in nets],
                         dtype=np.int64).reshape(-1, 4)
        src = _concat([n.src for n in nets], np.int64)
        dst = _concat([n.dst for n in nets], np.int64)
        codes = np.fromiter(map(_CODE.__getitem__, itertools.chain.from_iterable(n.activations for n in nets)),
                            dtype=np.int8, count=int(sizes[:, 1].sum()))
        outputs = _concat([n.output_index for n in nets], np.int64)
        weights = biases = None
    key = _key(sizes, src, dst, codes, outputs)
    with _lock:
        topology = _cache.get(key)
        if topology is not None:
            _cache.move_to_end(key)
            _stats[0] += 1
        else:
            _stats[1] += 1
    if topology is None:
        levels = nets.levels if isinstance(nets, PopulationColumns) else _concat([n.levels for n in nets], np.int64)
        topology = _build(sizes, src, dst, codes, outputs, levels)
        with _lock:
            _cache[key] = topology
            while sum(t.nbytes for t in _cache.values()) > TOPOLOGY_CACHE_BYTES and len(_cache) > 1:
                _cache.popitem(last=False)
    if weights is None or biases is None:
        weights = _concat([n.weights for n in nets], np.float64)
        biases = _concat([n.biases for n in nets], np.float64)
    if np.dtype(dtype) == np.float32:
        _check_float32(numbers, weights, topology.edge_off, biases, topology.node_off)
    return Packed(topology, weights[topology.in_take].astype(dtype, copy=False),
                  weights[topology.out_take].astype(dtype, copy=False), biases[topology.bias_take].astype(dtype, copy=False))


def _check_float32(numbers: Sequence[int] | None, weights: np.ndarray, edge_off: np.ndarray,
                   biases: np.ndarray, node_off: np.ndarray) -> None:
    limit = np.finfo(np.float32).max
    for values, offsets, place in ((biases, node_off, "nodes[{}].bias"), (weights, edge_off, "edges[{}].weight")):
        bad = np.flatnonzero(np.abs(values) > limit)
        if bad.size:
            p = int(np.searchsorted(offsets, bad[0], side="right")) - 1
            try:
                check_float32_range(values[offsets[p]:offsets[p + 1]], place)
            except InvalidInput as exc:
                raise InvalidInput(f"nets[{p if numbers is None else numbers[p]}]: {exc}") from None


def _concat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype=dtype)


def _key(sizes: np.ndarray, *arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    h.update(sizes.tobytes())
    for arr in arrays:
        h.update(len(arr).to_bytes(8, "little"))
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.digest()


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _build(sizes: np.ndarray, src: np.ndarray, dst: np.ndarray, codes: np.ndarray, outputs: np.ndarray,
           levels: np.ndarray) -> Topology:
    """Plan order, CSRs and file maps of every network at once (global numbering: networks one after another)."""
    n_in, n_nodes, n_out, n_edges = (sizes[:, i].copy() for i in range(4))
    count = n_in.size
    node_off, edge_off, out_off = _offsets(n_nodes), _offsets(n_edges), _offsets(n_out)
    vert_off = _offsets(n_in + n_nodes)
    net_of_edge = np.repeat(np.arange(count), n_edges)
    net_of_node = np.repeat(np.arange(count), n_nodes)
    net_of_vert = np.repeat(np.arange(count), n_in + n_nodes)
    g_src, g_dst = vert_off[net_of_edge] + src, vert_off[net_of_edge] + dst   # global file vertices
    is_node = np.arange(vert_off[-1]) - vert_off[net_of_vert] >= n_in[net_of_vert]
    node_vert = np.flatnonzero(is_node)                                        # global vertex of each file node

    live = _reaches_output(vert_off[np.repeat(np.arange(count), n_out)] + n_in[np.repeat(np.arange(count), n_out)]
                           + outputs, g_src, g_dst, levels, vert_off[-1])
    dead = ~live[node_vert]
    # plan order: by network, dead last, level, activation, then file position (the concatenation's order:
    # a stable sort of one combined key)
    node_level = levels[node_vert]
    span = int(node_level.max(initial=0)) + 1
    order = np.argsort(((net_of_node * 2 + dead) * span + node_level) * 16 + codes, kind="stable")
    row_of = np.empty(order.size, dtype=np.int64)
    row_of[order] = np.arange(order.size)                                    # file node -> global node row
    local_row = row_of - node_off[net_of_node]
    act_row = np.arange(vert_off[-1]) - vert_off[net_of_vert]                # vertex -> local activation row
    act_row[node_vert] = n_in[net_of_node] + local_row

    e_src_row = act_row[g_src]
    dst_node = _node_index(g_dst, vert_off, n_in, node_off, net_of_edge)       # global file node of dst
    e_dst_node = row_of[dst_node]                                              # global node row of dst
    widest = int((n_in + n_nodes).max(initial=0)) + 1
    in_order = np.argsort(e_dst_node * widest + e_src_row, kind="stable")
    in_ptr = _offsets(np.bincount(e_dst_node, minlength=order.size))

    n_live = np.bincount(net_of_node[~dead], minlength=count).astype(np.int64)
    g_src_row = vert_off[net_of_edge] + e_src_row                             # global vertex row of the source
    keep = np.flatnonzero(~dead[dst_node])
    out_order = keep[np.argsort(g_src_row[keep] * widest + (e_dst_node[keep] - node_off[net_of_edge[keep]]),
                                kind="stable")]
    out_ptr = _offsets(np.bincount(g_src_row[keep], minlength=int(vert_off[-1])))

    out_node = row_of[node_off[np.repeat(np.arange(count), n_out)] + outputs]  # global node row of each output
    out_k = np.full(order.size, -1, dtype=np.int32)
    out_k[out_node] = np.arange(out_node.size) - out_off[np.repeat(np.arange(count), n_out)]
    i32 = np.int32                       # a slab has far fewer than 2^31 edges and nodes
    return Topology(n_in, n_nodes, n_live, n_out, n_edges, node_off, vert_off, edge_off, out_off,
                    in_ptr.astype(i32), e_src_row[in_order].astype(i32), in_order.astype(i32),
                    out_ptr.astype(i32), (e_dst_node[out_order] - node_off[net_of_edge[out_order]]).astype(i32),
                    out_order.astype(i32), out_k, (out_node - node_off[np.repeat(np.arange(count), n_out)]).astype(i32),
                    e_src_row.astype(i32), (e_dst_node - node_off[net_of_edge]).astype(i32),
                    local_row.astype(i32), codes[order], order.astype(i32),
                    np.where(dead[order], -1, node_level[order]).astype(i32))


def _node_index(g_vert: np.ndarray, vert_off: np.ndarray, n_in: np.ndarray, node_off: np.ndarray,
                net: np.ndarray) -> np.ndarray:
    """Global file node of global file vertices that are computed nodes."""
    return g_vert - vert_off[net] - n_in[net] + node_off[net]


def _reaches_output(out_verts: np.ndarray, g_src: np.ndarray, g_dst: np.ndarray, levels: np.ndarray,
                    n_verts: int) -> np.ndarray:
    """Per global vertex: whether a path leads from it to an output (outputs included); all networks at once."""
    live = np.zeros(n_verts, dtype=bool)
    live[out_verts] = True
    src_level = levels[g_src]
    top = int(src_level.max(initial=0))
    small = np.int16 if top < np.iinfo(np.int16).max else np.int64  # 16 bits: numpy sorts by radix
    by_level = np.argsort((top - src_level).astype(small), kind="stable")   # edges by source level, deepest first
    bounds = np.flatnonzero(np.diff(src_level[by_level])) + 1
    for edges in np.split(by_level, bounds):                     # a level's sources read only deeper nodes
        live[g_src[edges[live[g_dst[edges]]]]] = True
    return live
