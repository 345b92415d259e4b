"""Checks of a whole population in columns: every network at once with numpy, messages naming ``nets[i]``.

Each rule a network must follow (``Network.from_arrays``'s: ids non-empty and unique, known activations,
finite values, edges within the network and not into an input, no self-loop, no repeated edge, outputs
among its nodes and distinct, no cycle; and the service's limits on nodes and edges) is one vectorised
test over all networks, but for repeated edges and cycles: those are found, with every vertex's level on
the way, by ``engine.graph_loops`` in one compiled call that walks the networks one by one (numpy's Kahn
walk over every network at once where numba does not load or the kernel setting is numpy: the same
answers). The checked columns carry those levels. Only when some network fails is one network looked at
alone: the first that fails, built with ``Network.from_arrays``, so its message is the one a single
network gets, led by ``nets[i]: ``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import kernelcache
from ..errors import EdgegradError, InvalidInput, ResourceExhausted
from .activations import ACTIVATION_NAMES
from .graph import edge_keys
from .network import Network
from .population import PopulationColumns, graph_levels

__all__ = ["check_columns", "network_limits", "load_graph_checks"]


def network_limits(sizes: np.ndarray, max_nodes: int, max_edges: int) -> None:
    """ResourceExhausted naming the first network over the service's limit of nodes or edges (0: no limit)."""
    over = np.zeros(sizes.shape[0], dtype=bool)
    if max_nodes:
        over |= sizes[:, 1] > max_nodes
    if max_edges:
        over |= sizes[:, 2] > max_edges
    if over.any():
        _limit(sizes, int(np.argmax(over)), max_nodes, max_edges)


def _limit(sizes: np.ndarray, p: int, max_nodes: int, max_edges: int) -> None:
    nodes, edges = int(sizes[p, 1]), int(sizes[p, 2])
    if max_nodes and nodes > max_nodes:
        raise ResourceExhausted(f"nets[{p}].node_ids: {nodes} nodes, over the limit of {max_nodes}")
    if max_edges and edges > max_edges:
        raise ResourceExhausted(f"nets[{p}].src: {edges} edges, over the limit of {max_edges}")


def check_columns(cols: PopulationColumns, activation_table: list[str], activation_index: np.ndarray,
                  max_nodes: int = 0, max_edges: int = 0) -> PopulationColumns:
    """The columns checked, with ``codes`` set from ``activation_table``/``activation_index`` (the wire's);
    InvalidInput (ResourceExhausted for a limit) naming the first network that breaks a rule.

    ``cols`` must already have columns of the right total lengths (``edgegrad.wire.columns`` sees to that).
    """
    count = len(cols)
    sizes = cols.sizes
    bad = np.zeros(count, dtype=bool)
    if max_nodes:
        bad |= sizes[:, 1] > max_nodes
    if max_edges:
        bad |= sizes[:, 2] > max_edges
    bad |= sizes[:, 3] == 0                                    # outputs: must name at least one node
    net_v = np.repeat(np.arange(count), sizes[:, 0] + sizes[:, 1])
    net_n = np.repeat(np.arange(count), sizes[:, 1])
    net_e = np.repeat(np.arange(count), sizes[:, 2])
    net_k = np.repeat(np.arange(count), sizes[:, 3])
    table = len(cols.id_table)
    ids_ok = (cols.id_index >= 0) & (cols.id_index < table)
    _mark(bad, net_v, ~ids_ok)
    empty = np.fromiter(map(len, cols.id_table), dtype=np.int64, count=table) == 0
    index = np.where(ids_ok, cols.id_index, 0)
    if empty.any():
        _mark(bad, net_v, empty[index])
    _mark(bad, net_v, _repeats(net_v, index, table))          # an id twice in one network
    known = np.array([name in _CODES for name in activation_table], dtype=bool)
    lut = np.array([_CODES.get(name, 0) for name in activation_table] + [0], dtype=np.int8)
    acts = activation_index.astype(np.int64)
    in_table = acts < len(activation_table)
    _mark(bad, net_n, ~in_table)
    _mark(bad, net_n, ~np.append(known, True)[np.where(in_table, acts, len(activation_table))])
    _mark(bad, net_n, ~np.isfinite(cols.biases))
    _mark(bad, net_e, ~np.isfinite(cols.weights))
    width_e = (sizes[:, 0] + sizes[:, 1])[net_e]
    in_range = (cols.src >= 0) & (cols.src < width_e) & (cols.dst >= 0) & (cols.dst < width_e)
    _mark(bad, net_e, ~in_range)
    _mark(bad, net_e, in_range & ((cols.dst < sizes[net_e, 0]) | (cols.src == cols.dst)))
    outs_ok = (cols.outputs >= 0) & (cols.outputs < sizes[net_k, 1])
    _mark(bad, net_k, ~outs_ok)
    _mark(bad, net_k, _repeats(net_k, np.where(outs_ok, cols.outputs, 0), int(sizes[:, 1].max(initial=0))))
    first = int(np.argmax(bad)) if bad.any() else count
    # repeated edges and cycles, where every edge is known to stay within its network; the levels on the way
    first, levels = _graph_pass(cols, first)
    if first < count:
        raise _exact(cols, activation_table, acts, first, max_nodes, max_edges)
    return PopulationColumns(sizes, cols.id_table, cols.id_index, cols.outputs, lut[acts],
                             cols.src, cols.dst, cols.weights, cols.biases).with_levels(levels)


_CODES = {name: code for code, name in enumerate(ACTIVATION_NAMES)}


def _mark(bad: np.ndarray, owner: np.ndarray, where: np.ndarray) -> None:
    """Mark the networks that own the elements where ``where`` holds."""
    if where.any():
        bad[owner[where]] = True


def _repeats(owner: np.ndarray, values: np.ndarray, span: int) -> np.ndarray:
    """Per element: whether an equal value comes earlier within the same network (values in [0, span))."""
    keys = owner.astype(np.int64) * max(span, 1) + values
    order = np.argsort(keys, kind="stable")
    again = np.zeros(keys.size, dtype=bool)
    again[order[1:]] = keys[order[1:]] == keys[order[:-1]]
    return again


def load_graph_checks() -> bool:
    """Load the compiled graph check now (numba's import and its cache, or a compile on a fresh install: about
    0.5 s, seconds), not in the first check; whether it loaded (False also under the kernel setting numpy)."""
    return _graph_loops() is not None


def _graph_loops() -> Any:
    return kernelcache.compiled("graph_loops", "compiled graph checks")


def _graph_pass(cols: PopulationColumns, limit: int) -> tuple[int, np.ndarray]:
    """(The first of networks [0, limit) with a repeated (src, dst) pair or a cycle, else ``limit``; every
    vertex's level, valid when that is every network): ``graph_loops`` in one compiled call, network by
    network, or numpy's ``_first_bad_graph`` where the kernel setting is numpy or numba does not load."""
    if not limit:
        return limit, np.zeros(0, dtype=np.int64)
    loops = _graph_loops()
    if loops is None:
        return _first_bad_graph(cols.slice(0, limit))
    levels = np.empty(int(cols.vert_off[limit]), dtype=np.int64)
    first = loops.check_graphs(_int64(cols.sizes), _int64(cols.vert_off), _int64(cols.edge_off), _int64(cols.src),
                               _int64(cols.dst), limit, levels)
    return int(first), levels


def _int64(arr: np.ndarray) -> np.ndarray:
    """``arr`` as the compiled check takes it: int64, C-contiguous, writable (a copy only where it is not)."""
    return np.require(arr, np.int64, ["C_CONTIGUOUS", "WRITEABLE"])


def _first_bad_graph(cols: PopulationColumns) -> tuple[int, np.ndarray]:
    """(The first network with a repeated (src, dst) pair or a cycle, len(cols) when none; every vertex's level,
    valid when none), with numpy over every network at once."""
    first = len(cols)
    base = np.repeat(cols.vert_off[:-1], cols.sizes[:, 2])
    n_vert = max(int(cols.vert_off[-1]), 1)
    keys = edge_keys(base + cols.src, base + cols.dst, n_vert)
    twice = np.flatnonzero(keys[1:] == keys[:-1])
    if twice.size:   # keys sort by global source vertex, so the first repeat is in the first such network
        first = int(np.searchsorted(cols.vert_off, keys[twice[0]] // n_vert, side="right")) - 1
        cols = cols.slice(0, first)
    levels = np.zeros(0, dtype=np.int64)
    if len(cols):
        levels, indegree, done = graph_levels(cols, None if twice.size else keys)
        if done < indegree.size:
            stuck = int(np.argmax(indegree > 0))
            first = min(first, int(np.searchsorted(cols.vert_off, stuck, side="right")) - 1)
    return first, levels


def _exact(cols: PopulationColumns, table: list[str], acts: np.ndarray, p: int, max_nodes: int,
           max_edges: int) -> EdgegradError:
    """Network p's own first error, as a single network's checks word it, led by ``nets[p]: ``."""
    _limit(cols.sizes, p, max_nodes, max_edges)
    n_in, n_nodes = int(cols.sizes[p, 0]), int(cols.sizes[p, 1])
    v, n, e, k = cols.vert_off, cols.node_off, cols.edge_off, cols.out_off
    try:
        ids = []
        for i, at in enumerate(cols.id_index[v[p]:v[p + 1]].tolist()):
            if not 0 <= at < len(cols.id_table):
                place = f"inputs[{i}]" if i < n_in else f"nodes[{i - n_in}].id"
                raise InvalidInput(f"{place}: index {at} is not in id_table (size {len(cols.id_table)})")
            ids.append(cols.id_table[at])
        names = []
        for i, code in enumerate(acts[n[p]:n[p + 1]].tolist()):
            if code >= len(table):
                raise InvalidInput(f"nodes[{i}].activation: index {code} is not in activation_table"
                                   f" (size {len(table)})")
            names.append(table[code])
        outputs = []
        for i, at in enumerate(cols.outputs[k[p]:k[p + 1]].tolist()):
            if not 0 <= at < n_nodes:
                raise InvalidInput(f"outputs[{i}]: index {at} out of range (0..{n_nodes - 1}) of the network's nodes")
            outputs.append(ids[n_in + at])
        Network.from_arrays(ids[:n_in], outputs, ids[n_in:], names, cols.biases[n[p]:n[p + 1]],
                            cols.src[e[p]:e[p + 1]], cols.dst[e[p]:e[p + 1]], cols.weights[e[p]:e[p + 1]])
    except EdgegradError as exc:
        return type(exc)(f"nets[{p}]: {exc.message}", field=exc.field)
    return InvalidInput(f"nets[{p}]: not a valid network")
