"""The graph check of a population in columns (repeated edges, cycles, levels): the compiled walk
(``engine.graph_loops``) and numpy's agree with each network's own check; checked columns carry their
levels through the stored topology to the workers, who pack without walking the graphs again."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgegrad import InvalidInput, Network
from edgegrad.engine import kernelcache
from edgegrad.engine.population import flat_results
from edgegrad.engine.population_pack import clear_topology_cache
from edgegrad.model import population as population_module
from edgegrad.model import population_checks
from edgegrad.model.population import PopulationColumns
from edgegrad.v1 import network_pb2
from edgegrad.wire.codec import array_from_tensor, tensor_from_array
from edgegrad.wire.columns import networks_from_proto, networks_to_proto, topology_blob, topology_from_blob

PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAULTS = ("none", "repeat", "cycle", "any")


def _dag(rng: np.random.Generator, n_nodes: int | None = None, p_edge: float = 0.35) -> Network:
    """A random valid network whose node numbering and edge order are not topological."""
    n_in = int(rng.integers(1, 5))
    n_nodes = int(rng.integers(1, 13)) if n_nodes is None else n_nodes
    order = rng.permutation(n_nodes)                      # order[t]: the node t-th in topological order
    edges = [(u, n_in + int(order[t])) for t in range(n_nodes)
             for u in list(range(n_in)) + [n_in + int(order[s]) for s in range(t)] if rng.random() < p_edge]
    edges = [edges[i] for i in rng.permutation(len(edges))]
    src = np.array([u for u, _ in edges], dtype=np.int64)
    dst = np.array([v for _, v in edges], dtype=np.int64)
    nodes = [f"n{i}" for i in range(n_nodes)]
    outputs = [nodes[i] for i in rng.choice(n_nodes, size=int(rng.integers(1, min(n_nodes, 3) + 1)), replace=False)]
    return Network.from_arrays([f"x{i}" for i in range(n_in)], outputs, nodes, "tanh", rng.normal(size=n_nodes),
                               src, dst, rng.normal(size=src.size))


def _inject(rng: np.random.Generator, net: Network, fault: str) -> tuple[np.ndarray, np.ndarray]:
    """The network's edges with one fault (edges stay within the network, out of the inputs, no self-loop)."""
    src, dst = net.src.copy(), net.dst.copy()
    e = src.size
    if fault == "repeat" and e >= 2:
        a, b = rng.choice(e, size=2, replace=False)
        src[b], dst[b] = src[a], dst[a]
    elif fault == "cycle" and e >= 2:
        inner = np.flatnonzero(src >= net.n_inputs)          # an edge a -> b between two nodes
        if inner.size:
            a = int(rng.choice(inner))
            b = int(rng.choice(np.delete(np.arange(e), a)))
            src[b], dst[b] = dst[a], src[a]                  # another edge becomes b -> a
    elif fault == "any" and e >= 1:
        j = int(rng.integers(e))
        d = int(rng.integers(net.n_inputs, net.n_inputs + net.n_nodes))
        s = int(rng.integers(0, net.n_inputs + net.n_nodes - 1))
        src[j], dst[j] = (s if s < d else s + 1), d
    return src, dst


def _population(seeds: list[int], faults: list[str]) -> tuple[PopulationColumns, list[Network | None], int]:
    """(Columns with the faults, each network as its own check builds it (None: rejected), the first rejected
    network (P when none))."""
    nets, srcs, dsts = [], [], []
    built: list[Network | None] = []
    for seed, fault in zip(seeds, faults):
        rng = np.random.default_rng(seed)
        net = _dag(rng)
        src, dst = _inject(rng, net, fault)
        nets.append(net)
        srcs.append(src)
        dsts.append(dst)
        try:
            built.append(Network.from_arrays(net.inputs, net.outputs, net.node_ids, net.activations, net.biases,
                                             src, dst, net.weights))
        except InvalidInput:
            built.append(None)
    cols = replace(PopulationColumns.from_networks(nets), src=np.concatenate(srcs), dst=np.concatenate(dsts))
    return cols, built, next((p for p, net in enumerate(built) if net is None), len(built))


def _levels(nets: Sequence[Network | None]) -> np.ndarray:
    """Each network's own levels, one after another."""
    return np.concatenate([net.levels for net in nets if net is not None] + [np.zeros(0, dtype=np.int64)])


def _compiled(cols: PopulationColumns) -> tuple[int, np.ndarray]:
    loops = kernelcache.load("graph_loops", "compiled graph checks")
    assert loops is not None, "the compiled graph check does not load (is numba installed?)"
    levels = np.full(int(cols.vert_off[-1]), -7, dtype=np.int64)
    first = loops.check_graphs(cols.sizes, cols.vert_off, cols.edge_off, cols.src, cols.dst, len(cols), levels)
    return int(first), levels


def _known(cols: PopulationColumns) -> np.ndarray:
    """The levels the columns carry (they must carry some)."""
    levels = cols.known_levels()
    assert levels is not None, "the columns carry no levels"
    return levels


def _check(msg: network_pb2.Networks, kernel: str) -> Any:
    """networks_from_proto under the kernel setting ``kernel``: the columns, or the message it raised."""
    with mock.patch.dict(os.environ, {"EDGEGRAD_KERNEL": kernel}):
        try:
            return networks_from_proto(msg)
        except InvalidInput as exc:
            return exc.message


@PROFILE
@given(plan=st.lists(st.tuples(st.integers(0, 2 ** 32 - 1), st.sampled_from(FAULTS)), min_size=1, max_size=8))
def test_compiled_and_numpy_find_the_first_bad_network_and_the_levels(plan: list[tuple[int, str]]) -> None:
    cols, nets, first = _population([s for s, _ in plan], [f for _, f in plan])
    got, levels = _compiled(cols)
    want, numpy_levels = population_checks._first_bad_graph(cols)
    assert got == want == first
    assert np.array_equal(levels[:cols.vert_off[first]], _levels(nets[:first]))
    if first == len(cols):
        assert np.array_equal(numpy_levels, _levels(nets))
    msg = networks_to_proto(cols)
    compiled, numpy = _check(msg, "compiled"), _check(msg, "numpy")
    if isinstance(numpy, str):
        assert compiled == numpy and compiled.startswith(f"nets[{first}]: ")
    else:
        assert first == len(cols)
        assert np.array_equal(_known(compiled), _levels(nets))
        assert np.array_equal(_known(numpy), _levels(nets))


def test_a_big_deep_network_among_small_ones() -> None:
    rng = np.random.default_rng(5)
    nets = [_dag(rng) for _ in range(30)] + [_dag(rng, n_nodes=400, p_edge=0.02)] + [_dag(rng) for _ in range(30)]
    chain = 300                                            # levels past 255: the stored levels take int32
    order = rng.permutation(chain)
    nets.append(Network.from_arrays(["x"], [f"n{order[-1]}"], [f"n{i}" for i in range(chain)], "tanh",
                                    np.zeros(chain), np.r_[0, 1 + order[:-1]], 1 + order, np.ones(chain)))
    cols = PopulationColumns.from_networks(nets)
    first, levels = _compiled(cols)
    assert first == len(nets) and np.array_equal(levels, np.concatenate([n.levels for n in nets]))
    checked = networks_from_proto(networks_to_proto(cols))
    msg = network_pb2.Networks.FromString(topology_blob(checked))
    assert array_from_tensor(msg.levels, "levels").dtype == np.int32 and int(checked.levels.max()) == chain
    assert np.array_equal(_known(topology_from_blob(topology_blob(checked))), levels)


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_checked_columns_carry_their_levels_to_the_stored_topology(kernel: str) -> None:
    rng = np.random.default_rng(11)
    nets = [_dag(rng) for _ in range(20)]
    want = np.concatenate([net.levels for net in nets])
    checked = _check(networks_to_proto(PopulationColumns.from_networks(nets)), kernel)
    assert np.array_equal(_known(checked), want)
    for same in (checked.topology(), checked.with_values(checked.weights, checked.biases)):
        assert same.known_levels() is _known(checked)
    part = checked.slice(4, 9)
    assert np.array_equal(_known(part), np.concatenate([net.levels for net in nets[4:9]]))
    blob = topology_blob(checked)
    msg = network_pb2.Networks.FromString(blob)
    assert array_from_tensor(msg.levels, "levels").dtype == np.uint8
    stored = topology_from_blob(blob)
    assert np.array_equal(_known(stored), want) and _known(stored).dtype == np.int64
    assert np.array_equal(_known(stored.slice(4, 9)), _known(part))


def test_a_requests_levels_are_never_read() -> None:
    rng = np.random.default_rng(12)
    nets = [_dag(rng) for _ in range(6)]
    msg = networks_to_proto(PopulationColumns.from_networks(nets))
    msg.levels.CopyFrom(tensor_from_array(np.zeros(sum(n.n_inputs + n.n_nodes for n in nets), dtype=np.int32)))
    for kernel in ("numpy", "compiled"):
        assert np.array_equal(_known(_check(msg, kernel)), np.concatenate([net.levels for net in nets]))


def test_without_numba_the_numpy_walk_checks_and_gives_the_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kernelcache._loaded, "graph_loops", "ImportError: no numba here")
    assert not population_checks.load_graph_checks()
    cols, nets, first = _population([1, 2, 3, 4], ["none", "none", "repeat", "none"])
    assert first == 2
    with pytest.raises(InvalidInput, match=r"^nets\[2\]: edges\[\d+\]: duplicate edge"):
        networks_from_proto(networks_to_proto(cols))
    good = [net for net in nets if net is not None]
    assert np.array_equal(_known(networks_from_proto(networks_to_proto(PopulationColumns.from_networks(good)))),
                          _levels(good))


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_a_topology_from_its_blob_packs_without_walking_the_graphs(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(13)
    nets = [_dag(rng) for _ in range(40)]
    cols = PopulationColumns.from_networks(nets)
    x = rng.normal(size=(9, 4))
    blob = topology_blob(networks_from_proto(networks_to_proto(cols)))
    old = network_pb2.Networks.FromString(blob)
    old.ClearField("levels")                               # as a server without levels stored it
    monkeypatch.setenv("EDGEGRAD_KERNEL", kernel)
    inputs = [x[:, :net.n_inputs] for net in nets]
    targets = [rng.normal(size=(9, net.n_outputs)) for net in nets]
    clear_topology_cache()
    want = flat_results(nets[10:30], inputs[10:30], targets[10:30], loss="mse")
    clear_topology_cache()
    from_old = topology_from_blob(old.SerializeToString())
    assert from_old.known_levels() is None                 # an old blob: the levels computed when needed
    got_old = flat_results(from_old.slice(10, 30).with_values(cols.slice(10, 30).weights, cols.slice(10, 30).biases),
                           inputs[10:30], targets[10:30], loss="mse")
    clear_topology_cache()

    def no_walk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the levels were walked again")

    monkeypatch.setattr(population_module, "graph_levels", no_walk)
    stored = topology_from_blob(blob)
    got = flat_results(stored.slice(10, 30).with_values(cols.slice(10, 30).weights, cols.slice(10, 30).biases),
                       inputs[10:30], targets[10:30], loss="mse")
    for name in ("outputs", "edge_grads", "deltas", "loss"):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes() == getattr(got_old, name).tobytes(), name


def test_the_compiled_check_loads_unless_the_setting_is_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGRAD_KERNEL", "numpy")
    assert not population_checks.load_graph_checks()
    monkeypatch.setenv("EDGEGRAD_KERNEL", "auto")
    assert population_checks.load_graph_checks()
