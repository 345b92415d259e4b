"""Populations in columns (``PopulationColumns``, ``edgegrad.v1.Networks``): built from networks and sent in a few
tensors, checked as a whole with the messages a single network gets (led by ``nets[i]``), and computed by the
engine straight from the columns with the same bits as from the networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from dags import network_seeds, random_inputs, random_network, random_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgegrad
from edgegrad import InvalidInput, Network
from edgegrad.engine.population import flat_results
from edgegrad.errors import EdgegradError, ResourceExhausted
from edgegrad.model.population import PopulationColumns
from edgegrad.v1 import network_pb2
from edgegrad.wire.codec import array_from_tensor, tensor_from_array
from edgegrad.wire.columns import networks_from_proto, networks_to_proto, topology_blob, topology_from_blob

PROFILE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = ("outputs", "edge_grads", "deltas", "norms")
NETS = [random_network(40 + i, n_inputs=3, n_nodes=5 + i % 6, n_outputs=1 + i % 2) for i in range(12)]
X = random_inputs(1, 17, 3)


def _identical(a: edgegrad.GradientResult, b: edgegrad.GradientResult) -> None:
    assert a.loss == b.loss
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


def _roundtrip(nets: list[Network]) -> PopulationColumns:
    msg = network_pb2.Networks.FromString(networks_to_proto(PopulationColumns.from_networks(nets)).SerializeToString())
    return networks_from_proto(msg)


def test_columns_round_trip_and_rebuild_each_network() -> None:
    cols = _roundtrip(NETS)
    built = PopulationColumns.from_networks(NETS)
    assert cols.content_hash() == built.content_hash()
    assert np.array_equal(cols.levels, np.concatenate([n.levels for n in NETS]))
    for p, net in enumerate(NETS):
        assert cols.network(p).content_hash == net.content_hash
        assert cols.input_ids(p) == list(net.inputs) and cols.output_ids(p) == list(net.outputs)
    stored = topology_from_blob(topology_blob(cols))
    assert stored.content_hash() == cols.content_hash() and stored.weights.size == 0
    assert stored.slice(3, 7).with_values(cols.slice(3, 7).weights, cols.slice(3, 7).biases).network(1).content_hash \
        == NETS[4].content_hash
    other = NETS[:5] + [NETS[5].with_parameters(NETS[5].weights * 2)] + NETS[6:]
    assert PopulationColumns.from_networks(other).content_hash() == cols.content_hash()  # weights are not topology
    swapped = NETS[1:2] + NETS[:1] + NETS[2:]
    assert PopulationColumns.from_networks(swapped).content_hash() != cols.content_hash()


@pytest.mark.parametrize("nodes, wire", [(252, np.uint8), (253, np.int32)])
def test_indices_travel_in_the_smallest_type_that_holds_them(nodes: int, wire: type) -> None:
    """4 inputs + 252 nodes is 256 vertices, indices 0..255: one byte each; one more vertex takes int32."""
    wide = random_network(7, n_inputs=4, n_nodes=nodes, n_outputs=2)
    nets = [*NETS[:3], wide]
    msg = networks_to_proto(PopulationColumns.from_networks(nets))
    for name in ("src", "dst", "outputs"):
        assert array_from_tensor(getattr(msg, name), name).dtype == wire, name
    assert array_from_tensor(msg.id_index, "id_index").dtype == (np.uint8 if len(msg.id_table) <= 256 else np.int32)
    cols = networks_from_proto(network_pb2.Networks.FromString(msg.SerializeToString()))
    assert cols.content_hash() == PopulationColumns.from_networks(nets).content_hash()
    assert cols.network(3).content_hash == wide.content_hash


@pytest.mark.usefixtures("each_kernel")
@pytest.mark.parametrize("mode", [dict(), dict(loss="mse"), dict(loss="softmax_ce", per_example=True),
                                  dict(loss="mse", clip_norm=0.05, reduction="sum"), dict(loss="mse", dtype="float32"),
                                  dict(loss="bce", norms=True)])
def test_the_engine_gives_the_same_bits_from_columns_as_from_networks(mode) -> None:
    mode = dict(mode)
    nets = NETS if mode.get("loss") != "bce" else [random_network(60 + i, n_inputs=3, n_nodes=6, n_outputs=2,
                                                                  output_activations=("sigmoid",)) for i in range(12)]
    targets = None
    if "loss" in mode:
        targets = [random_targets(p, mode["loss"], 17, n.n_outputs) for p, n in enumerate(nets)]
    cols = _roundtrip(nets)
    want = edgegrad.gradients_many(nets, X, targets, **mode)
    for got, ref in zip(edgegrad.gradients_many(cols, X, targets, **mode), want):
        _identical(got, ref)
    flat = flat_results(cols, X, targets, **mode)
    assert flat.outputs.tobytes() == np.concatenate([r.outputs.ravel() for r in want]).tobytes()
    assert flat.edge_grads.tobytes() == np.concatenate([r.edge_grads.ravel() for r in want]).tobytes()
    assert flat.deltas.tobytes() == np.concatenate([r.deltas.ravel() for r in want]).tobytes()
    if "loss" in mode:
        assert flat.loss.tolist() == [r.loss for r in want]
    outs = flat_results(cols, X, outputs_only=True)
    assert outs.outputs.tobytes() == np.concatenate([o.ravel() for o in edgegrad.outputs_many(nets, X)]).tobytes()
    assert outs.edge_grads.size == 0


def _msg(nets: list[Network] = NETS) -> network_pb2.Networks:
    return networks_to_proto(PopulationColumns.from_networks(nets))


def _set(msg: network_pb2.Networks, field: str, index: int, value: Any) -> None:
    """Element ``index`` of tensor ``field`` set to ``value`` (integers as int64, which hold any bad index)."""
    from edgegrad.wire.codec import array_from_tensor

    arr = array_from_tensor(getattr(msg, field), field)
    arr = arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.copy()
    arr[index] = value
    getattr(msg, field).CopyFrom(tensor_from_array(arr))


def _where(p: int, what: str) -> int:
    """The flat index of network p's first edge / node / vertex / output in the columns."""
    cols = PopulationColumns.from_networks(NETS)
    return int({"edge": cols.edge_off, "node": cols.node_off, "vertex": cols.vert_off, "output": cols.out_off}[what][p])


def _edge_to(p: int, src: int, dst: int) -> Callable[[network_pb2.Networks], None]:
    def change(msg: network_pb2.Networks) -> None:
        _set(msg, "src", _where(p, "edge"), src)
        _set(msg, "dst", _where(p, "edge"), dst)
    return change


def _single(p: int, **change: Any) -> str:
    """The message Network.from_arrays gives network p with ``change`` applied, led by ``nets[p]: ``."""
    net = NETS[p]
    args = dict(inputs=list(net.inputs), outputs=list(net.outputs), node_ids=list(net.node_ids),
                activations=list(net.activations), biases=net.biases.copy(), src=net.src.copy(), dst=net.dst.copy(),
                weights=net.weights.copy())
    for key, (index, value) in change.items():
        args[key][index] = value
    with pytest.raises(EdgegradError) as info:
        Network.from_arrays(**args)
    return f"nets[{p}]: {info.value.message}"


CASES = [  # (change to the Networks message, the message that names the network and the place)
    (lambda m: _set(m, "weights", _where(4, "edge") + 1, np.nan), lambda: _single(4, weights=(1, np.nan))),
    (lambda m: _set(m, "biases", _where(6, "node") + 2, np.inf), lambda: _single(6, biases=(2, np.inf))),
    (lambda m: _set(m, "src", _where(3, "edge"), 99), lambda: _single(3, src=(0, 99))),
    (lambda m: _set(m, "dst", _where(3, "edge"), -1), lambda: _single(3, dst=(0, -1))),
    (_edge_to(5, 4, 1), lambda: _single(5, src=(0, 4), dst=(0, 1))),                     # into an input
    (_edge_to(7, 4, 4), lambda: _single(7, src=(0, 4), dst=(0, 4))),                     # a self-loop
    (_edge_to(2, int(NETS[2].src[1]), int(NETS[2].dst[1])),
     lambda: _single(2, src=(0, int(NETS[2].src[1])), dst=(0, int(NETS[2].dst[1])))),    # a repeated edge
    (lambda m: _set(m, "id_index", _where(8, "vertex") + 4, int(np.asarray(PopulationColumns.from_networks(NETS)
                                                                             .id_index)[_where(8, "vertex")])),
     lambda: _single(8, node_ids=(1, NETS[8].inputs[0]))),                              # an id twice
    (lambda m: _set(m, "outputs", _where(9, "output"), 60), lambda: "nets[9]: outputs[0]: index 60 out of range"),
    (lambda m: _set(m, "activation_index", _where(1, "node"), 40),
     lambda: "nets[1]: nodes[0].activation: index 40 is not in activation_table"),
    (lambda m: _set(m, "id_index", _where(10, "vertex"), 10 ** 6),
     lambda: "nets[10]: inputs[0]: index 1000000 is not in id_table"),
]


@pytest.mark.parametrize("change, message", CASES)
def test_a_bad_network_in_columns_is_named_with_its_own_message(change, message) -> None:
    msg = _msg()
    change(msg)
    with pytest.raises(InvalidInput) as info:
        networks_from_proto(msg)
    assert info.value.message.startswith(message())


def test_a_cycle_and_the_first_bad_network_and_limits() -> None:
    msg = _msg()
    net = NETS[6]
    e = next(e for e in range(1, net.n_edges) if net.src[e] >= net.n_inputs)   # u -> v between two nodes
    _edge_to(6, int(net.dst[e]), int(net.src[e]))(msg)                         # edge 0 becomes v -> u
    with pytest.raises(InvalidInput, match=r"^nets\[6\]: cycle: "):
        networks_from_proto(msg)
    _set(msg, "weights", _where(9, "edge"), np.nan)           # a later network's error does not hide network 6's
    with pytest.raises(InvalidInput, match=r"^nets\[6\]: cycle: "):
        networks_from_proto(msg)
    _set(msg, "biases", _where(2, "node"), np.nan)            # an earlier one's does
    with pytest.raises(InvalidInput, match=r"^nets\[2\]: nodes\[0\]\.bias: must be finite"):
        networks_from_proto(msg)
    biggest = max(range(len(NETS)), key=lambda p: NETS[p].n_edges)
    with pytest.raises(ResourceExhausted, match=rf"^nets\[{biggest}\]\.src: {NETS[biggest].n_edges} edges, over"):
        networks_from_proto(_msg(), max_edges=NETS[biggest].n_edges - 1)
    with pytest.raises(ResourceExhausted, match=r"^nets\[0\]\.node_ids: "):
        networks_from_proto(_msg(), max_nodes=1)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.sizes.CopyFrom(tensor_from_array(np.zeros((12, 3), dtype=np.int64))), "networks.sizes: expected"),
    (lambda m: m.sizes.CopyFrom(tensor_from_array(np.zeros((0, 4), dtype=np.int64))),
     "nets: expected at least one network"),
    (lambda m: _set(m, "sizes", (3, 2), -1), "networks.sizes[3][2]: -1 is not a size"),
    (lambda m: _set(m, "sizes", (3, 2), 1000), "networks.src: expected"),
    (lambda m: m.weights.CopyFrom(tensor_from_array(np.zeros(3))), "networks.weights: expected"),
    (lambda m: m.src.CopyFrom(tensor_from_array(np.zeros(3))), "networks.src.dtype: expected uint8, int32 or int64"),
    (lambda m: m.id_table.append(m.id_table[0]), "networks.id_table["),
    (lambda m: m.ClearField("biases"), "networks.biases: missing"),
])
def test_malformed_columns_name_the_field(change, message) -> None:
    msg = _msg()
    change(msg)
    with pytest.raises(InvalidInput) as info:
        networks_from_proto(msg)
    assert info.value.message.startswith(message)


def test_no_activations_means_identity_everywhere() -> None:
    msg = _msg()
    msg.ClearField("activation_index")
    msg.ClearField("activation_table")
    cols = networks_from_proto(msg)
    assert cols.network(0).activations == ("identity",) * NETS[0].n_nodes


_FIELD = st.sampled_from(["src", "dst", "weights", "biases", "outputs", "id_index", "activation_index"])


@PROFILE
@given(seeds=st.lists(network_seeds(max_nodes=7), min_size=1, max_size=6), data=st.data())
def test_the_whole_population_check_agrees_with_each_networks_own(seeds: list[dict[str, Any]], data: Any) -> None:
    """A random change anywhere: rejected exactly when some network alone is bad, naming the first such."""
    nets = [random_network(**kw) for kw in seeds]
    msg = _msg(nets)
    cols = PopulationColumns.from_networks(nets)
    field = data.draw(_FIELD)
    from edgegrad.wire.codec import array_from_tensor

    size = array_from_tensor(getattr(msg, field), field).size
    if size == 0:
        return
    index = data.draw(st.integers(0, size - 1))
    value = data.draw(st.sampled_from([np.nan, 0.5, -np.inf]) if field in ("weights", "biases")
                      else st.sampled_from([0, 1, 2, 3, 5, 8, 40]) if field == "activation_index"
                      else st.sampled_from([-1, 0, 1, 2, 3, 5, 8]))
    _set(msg, field, index, value)
    offsets = {"src": cols.edge_off, "dst": cols.edge_off, "weights": cols.edge_off, "biases": cols.node_off,
               "outputs": cols.out_off, "id_index": cols.vert_off, "activation_index": cols.node_off}[field]
    changed = int(np.searchsorted(offsets, index, side="right")) - 1
    one = network_pb2.Networks()
    one.CopyFrom(msg)
    try:                                          # the changed network alone
        sub = PopulationColumns.from_networks(nets).slice(changed, changed + 1)
        alone = networks_to_proto(sub)
        for name in ("src", "dst", "weights", "biases", "outputs", "id_index", "activation_index"):
            whole = array_from_tensor(getattr(msg, name), name)
            off = {"src": cols.edge_off, "dst": cols.edge_off, "weights": cols.edge_off, "biases": cols.node_off,
                   "outputs": cols.out_off, "id_index": cols.vert_off, "activation_index": cols.node_off}[name]
            getattr(alone, name).CopyFrom(tensor_from_array(whole[off[changed]:off[changed + 1]]))
        alone.ClearField("activation_table")
        alone.activation_table.extend(msg.activation_table)
        alone.ClearField("id_table")
        alone.id_table.extend(msg.id_table)
        networks_from_proto(alone)
        bad_alone = None
    except InvalidInput as exc:
        bad_alone = exc.message.replace("nets[0]", f"nets[{changed}]", 1)
    if bad_alone is None:
        networks_from_proto(msg)
        return
    with pytest.raises(InvalidInput) as info:
        networks_from_proto(msg)
    assert info.value.message == bad_alone
