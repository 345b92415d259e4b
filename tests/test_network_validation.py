"""Every bad-network rule of the contract through from_dict, from_arrays and load; messages name the place."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dags import random_network_dict
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegrad import InvalidInput, Network

GOOD: dict[str, Any] = {
    "format": "edgegrad.network/v1",
    "inputs": ["x1", "x2"],
    "outputs": ["y"],
    "nodes": [{"id": "h1", "activation": "sigmoid", "bias": 0.1},
              {"id": "h2", "activation": "relu"},
              {"id": "y", "activation": "identity"}],
    "edges": [{"src": "x1", "dst": "h1", "weight": 0.5},
              {"src": "x2", "dst": "h1", "weight": -0.3},
              {"src": "h1", "dst": "h2", "weight": 1.2},
              {"src": "h2", "dst": "y", "weight": 0.7}],
}


def _bad(change: Callable[[dict[str, Any]], Any], pattern: str) -> InvalidInput:
    """Apply ``change`` to a copy of GOOD; from_dict must raise InvalidInput matching ``pattern``."""
    data = copy.deepcopy(GOOD)
    change(data)
    with pytest.raises(InvalidInput) as info:
        Network.from_dict(data)
    assert re.fullmatch(pattern, str(info.value)), str(info.value)
    assert info.value.code == "INVALID_ARGUMENT"
    return info.value


def test_the_good_network_is_good() -> None:
    net = Network.from_dict(GOOD)
    assert net.n_edges == 4 and net.outputs == ("y",)


# ------------------------------------------------------------------ the top level
@pytest.mark.parametrize("data, pattern", [
    ([], r"network: expected a JSON object, got a list"),
    ("net", r"network: expected a JSON object, got a string"),
    (None, r"network: expected a JSON object, got null"),
])
def test_not_an_object(data: Any, pattern: str) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        Network.from_dict(data)


def test_unknown_keys_are_errors_at_every_level() -> None:
    _bad(lambda d: d.update(edge=[]), r"network: unknown key 'edge' \(allowed: .*\)")
    _bad(lambda d: d["nodes"][1].update(bais=0.2), r"nodes\[1\]: unknown key 'bais' \(allowed: .*\)")
    _bad(lambda d: d["edges"][3].update(wieght=1.0), r"edges\[3\]: unknown key 'wieght' \(allowed: .*\)")


def test_format() -> None:
    _bad(lambda d: d.update(format="edgegrad.network/v2"), r"format: expected 'edgegrad.network/v1', got \"edgegrad.network/v2\"")
    _bad(lambda d: d.update(format=1), r"format: expected 'edgegrad.network/v1', got 1")
    data = copy.deepcopy(GOOD)
    del data["format"]  # optional
    assert Network.from_dict(data) == Network.from_dict(GOOD)


@pytest.mark.parametrize("key", ["inputs", "outputs", "nodes"])
def test_missing_sections(key: str) -> None:
    _bad(lambda d: d.pop(key), rf"{key}: missing")


def test_edges_may_be_missing_or_empty() -> None:
    data = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}]}
    assert Network.from_dict(data).n_edges == 0
    assert Network.from_dict(dict(data, edges=[])).n_edges == 0


# ------------------------------------------------------------------ ids
def test_id_lists() -> None:
    _bad(lambda d: d.update(inputs="x1"), r"inputs: expected a list, got a string")
    _bad(lambda d: d.update(inputs=["x1", 3]), r"inputs\[1\]: expected a non-empty string id, got 3")
    _bad(lambda d: d.update(inputs=["x1", ""]), r"inputs\[1\]: expected a non-empty string id, got \"\"")
    _bad(lambda d: d.update(nodes={"id": "y"}), r"nodes: expected a list, got an object")
    _bad(lambda d: d["nodes"].append("h3"), r"nodes\[3\]: expected an object, got a string")
    _bad(lambda d: d["nodes"][2].pop("id"), r"nodes\[2\]\.id: missing")
    _bad(lambda d: d["nodes"][0].update(id=None), r"nodes\[0\]\.id: expected a non-empty string id, got null")


def test_ids_are_unique_across_inputs_and_nodes() -> None:
    _bad(lambda d: d.update(inputs=["x1", "x2", "x1"]), r"inputs\[2\]: duplicate id 'x1'")
    _bad(lambda d: d["nodes"][1].update(id="x2"), r"nodes\[1\]\.id: duplicate id 'x2'")
    _bad(lambda d: d["nodes"][2].update(id="h1"), r"nodes\[2\]\.id: duplicate id 'h1'")


# ------------------------------------------------------------------ activations and numbers
def test_activation() -> None:
    _bad(lambda d: d["nodes"][0].update(activation="swish"), r"nodes\[0\]\.activation: unknown activation 'swish' \(expected one of identity, .*\)")
    _bad(lambda d: d["nodes"][0].update(activation="ReLU"), r"nodes\[0\]\.activation: unknown activation 'ReLU'.*")
    _bad(lambda d: d["nodes"][0].update(activation=None), r"nodes\[0\]\.activation: expected a string, got null")


@pytest.mark.parametrize("value, shown", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")])
def test_non_finite_numbers(value: float, shown: str) -> None:
    _bad(lambda d: d["nodes"][1].update(bias=value), rf"nodes\[1\]\.bias: must be finite, got {shown}")
    _bad(lambda d: d["edges"][2].update(weight=value), rf"edges\[2\]\.weight: must be finite, got {shown}")


@pytest.mark.parametrize("value, kind", [("0.5", "a string"), (True, "a boolean"), (None, "null"), ([1.0], "a list")])
def test_numbers_must_be_numbers(value: Any, kind: str) -> None:
    _bad(lambda d: d["nodes"][0].update(bias=value), rf"nodes\[0\]\.bias: expected a number, got {kind}")
    _bad(lambda d: d["edges"][1].update(weight=value), rf"edges\[1\]\.weight: expected a number, got {kind}")


def test_defaults() -> None:
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
                             "edges": [{"src": "x", "dst": "y", "weight": 2}]})
    assert net.activations == ("identity",) and net.biases.tolist() == [0.0] and net.weights.tolist() == [2.0]


# ------------------------------------------------------------------ edges
def test_edge_fields() -> None:
    _bad(lambda d: d.update(edges={}), r"edges: expected a list, got an object")
    _bad(lambda d: d["edges"].append(["x1", "y", 1.0]), r"edges\[4\]: expected an object, got a list")
    for key in ("src", "dst", "weight"):
        _bad(lambda d, key=key: d["edges"][3].pop(key), rf"edges\[3\]\.{key}: missing")
    _bad(lambda d: d["edges"][0].update(src=0), r"edges\[0\]\.src: expected a node id string, got int")


def test_unknown_node_in_an_edge() -> None:
    _bad(lambda d: d["edges"][3].update(dst="h9"), r"edges\[3\]\.dst: unknown node 'h9'")
    _bad(lambda d: d["edges"][1].update(src="x3"), r"edges\[1\]\.src: unknown node 'x3'")


def test_edges_into_inputs() -> None:
    _bad(lambda d: d["edges"].append({"src": "h1", "dst": "x2", "weight": 1.0}),
         r"edges\[4\]\.dst: 'x2' is an input and cannot have incoming edges")


def test_at_most_one_edge_per_pair() -> None:
    _bad(lambda d: d["edges"].append({"src": "x2", "dst": "h1", "weight": 9.0}),
         r"edges\[4\]: duplicate edge x2 -> h1 \(same as edges\[1\]\)")


def test_self_loop_is_a_cycle() -> None:
    err = _bad(lambda d: d["edges"].append({"src": "h2", "dst": "h2", "weight": 1.0}), r"cycle: h2 -> h2")
    assert err.field is not None


def test_two_node_cycle() -> None:
    _bad(lambda d: d["edges"].append({"src": "h2", "dst": "h1", "weight": 1.0}),
         r"cycle: (h1 -> h2 -> h1|h2 -> h1 -> h2)")


def test_cycle_away_from_the_outputs_is_still_found() -> None:
    def change(d: dict[str, Any]) -> None:
        d["nodes"] += [{"id": "a"}, {"id": "b"}, {"id": "c"}]
        d["edges"] += [{"src": "x1", "dst": "a", "weight": 1.0}, {"src": "a", "dst": "b", "weight": 1.0},
                       {"src": "b", "dst": "c", "weight": 1.0}, {"src": "c", "dst": "a", "weight": 1.0}]
    _bad(change, r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)")


def _check_cycle_message(message: str, edges: set[tuple[str, str]]) -> None:
    assert message.startswith("cycle: "), message
    path = message[len("cycle: "):].split(" -> ")
    assert len(path) >= 2 and path[0] == path[-1], message
    assert len(set(path[:-1])) == len(path) - 1, message        # a simple cycle
    for u, v in zip(path, path[1:]):
        assert (u, v) in edges, f"{message}: {u} -> {v} is not an edge"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_nodes=st.integers(4, 10), data=st.data())
def test_any_back_edge_reports_an_actual_cycle(seed: int, n_nodes: int, data: st.DataObject) -> None:
    d = random_network_dict(seed, n_nodes=n_nodes, p_edge=0.5)
    edges = {(e["src"], e["dst"]) for e in d["edges"]}
    # u reaches v through existing edges; adding v -> u closes a cycle
    nodes = [n["id"] for n in d["nodes"]]
    children: dict[str, list[str]] = {}
    for s, t in edges:
        children.setdefault(s, []).append(t)
    pairs = []
    for u in nodes:
        seen, stack = set(), list(children.get(u, []))
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(children.get(v, []))
        pairs += [(u, v) for v in sorted(seen) if (v, u) not in edges]
    if not pairs:
        return
    u, v = data.draw(st.sampled_from(pairs))
    position = data.draw(st.integers(0, len(d["edges"])))
    d["edges"].insert(position, {"src": v, "dst": u, "weight": 1.0})
    with pytest.raises(InvalidInput) as info:
        Network.from_dict(d)
    _check_cycle_message(str(info.value), edges | {(v, u)})


# ------------------------------------------------------------------ outputs
def test_outputs() -> None:
    _bad(lambda d: d.update(outputs=[]), r"outputs: must name at least one node")
    _bad(lambda d: d.update(outputs="y"), r"outputs: expected a list, got a string")
    _bad(lambda d: d.update(outputs=["x1"]), r"outputs\[0\]: 'x1' is an input; outputs must be computed nodes")
    _bad(lambda d: d.update(outputs=["y", "zz"]), r"outputs\[1\]: unknown node 'zz'")
    _bad(lambda d: d.update(outputs=["y", "h1", "y"]), r"outputs\[2\]: duplicate output 'y'")


def test_legal_oddities() -> None:
    # bias-only node, dead node, unused input, output feeding an output: all legal
    net = Network.from_dict({"inputs": ["x", "unused"], "outputs": ["a", "b"],
                             "nodes": [{"id": "a"}, {"id": "b"}, {"id": "lonely", "bias": 1.0},
                                       {"id": "dead", "activation": "tanh"}],
                             "edges": [{"src": "x", "dst": "a", "weight": 1.0}, {"src": "a", "dst": "b", "weight": 1.0},
                                       {"src": "lonely", "dst": "b", "weight": 1.0}, {"src": "x", "dst": "dead", "weight": 1.0}]})
    assert net.n_nodes == 4 and net.n_edges == 4


# ------------------------------------------------------------------ from_arrays
ARR = dict(inputs=["x1", "x2"], outputs=["y"], node_ids=["h", "y"], activations=["tanh", "identity"],
           biases=[0.1, 0.0], src=[0, 1, 2], dst=[2, 2, 3], weights=[0.5, -0.5, 2.0])


def _bad_arrays(pattern: str, **change: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        Network.from_arrays(**{**ARR, **change})
    assert re.fullmatch(pattern, str(info.value)), str(info.value)


def test_from_arrays_accepts_indices_or_ids_and_matches_from_dict() -> None:
    by_index = Network.from_arrays(**ARR)
    by_id = Network.from_arrays(**{**ARR, "src": ["x1", "x2", "h"], "dst": ["h", "h", "y"]})
    from_dict = Network.from_dict({
        "inputs": ["x1", "x2"], "outputs": ["y"],
        "nodes": [{"id": "h", "activation": "tanh", "bias": 0.1}, {"id": "y"}],
        "edges": [{"src": "x1", "dst": "h", "weight": 0.5}, {"src": "x2", "dst": "h", "weight": -0.5},
                  {"src": "h", "dst": "y", "weight": 2.0}]})
    assert by_index == by_id == from_dict
    assert by_index.content_hash == from_dict.content_hash


def test_from_arrays_rules() -> None:
    _bad_arrays(r"activations: expected 2 entries \(one per node\), got 3", activations=["tanh"] * 3)
    _bad_arrays(r"nodes\[1\]\.activation: unknown activation 'relu6'.*", activations=["tanh", "relu6"])
    _bad_arrays(r"biases: expected 2 entries, got 1", biases=[0.1])
    _bad_arrays(r"nodes\[1\]\.bias: must be finite, got nan", biases=[0.1, math.nan])
    _bad_arrays(r"biases: expected numbers", biases=["a", "b"])
    _bad_arrays(r"weights: expected 3 entries, got 2", weights=[1.0, 2.0])
    _bad_arrays(r"edges\[2\]\.weight: must be finite, got inf", weights=[1.0, 2.0, math.inf])
    _bad_arrays(r"edges\[1\]\.src: index 9 out of range \(0\.\.3\)", src=[0, 9, 2])
    _bad_arrays(r"edges\[0\]\.dst: index -1 out of range \(0\.\.3\)", dst=[-1, 2, 3])
    _bad_arrays(r"edges\[2\]\.src: unknown node 'q'", src=["x1", "x2", "q"])
    _bad_arrays(r"edges: src has 3 entries but dst has 2", dst=[2, 2])
    _bad_arrays(r"edges\[0\]\.dst: 'x1' is an input and cannot have incoming edges", dst=[0, 2, 3])
    _bad_arrays(r"edges\[2\]: duplicate edge x1 -> h \(same as edges\[0\]\)", src=[0, 1, 0], dst=[2, 2, 2])
    _bad_arrays(r"cycle: (h -> y -> h|y -> h -> y)", src=[0, 3, 2], dst=[2, 2, 3])
    _bad_arrays(r"outputs\[0\]: unknown node 'z'", outputs=["z"])
    _bad_arrays(r"nodes\[1\]\.id: duplicate id 'h'", node_ids=["h", "h"])
    _bad_arrays(r"inputs\[1\]: duplicate id 'x1'", inputs=["x1", "x1"])


def test_from_arrays_single_activation_name_and_numpy_columns() -> None:
    net = Network.from_arrays(["x"], ["b"], np.array(["a", "b"]), "tanh", np.zeros(2),
                              np.array([0, 1], dtype=np.int32), np.array([1, 2], dtype=np.uint16), np.ones(2))
    assert net.activations == ("tanh", "tanh") and net.edge_pairs() == [["x", "a"], ["a", "b"]]


# ------------------------------------------------------------------ load
def test_load_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(missing))}: cannot read"):
        Network.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"inputs": ["x"], ')
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(broken))}: not valid JSON"):
        Network.load(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(binary))}: "):
        Network.load(binary)


def test_load_applies_every_rule(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["edges"][3]["dst"] = "h9"
    path = tmp_path / "net.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInput, match=r"^edges\[3\]\.dst: unknown node 'h9'$"):
        Network.load(path)
    # JSON's NaN/Infinity extensions parse, and are then refused
    path.write_text(json.dumps(GOOD).replace('"bias": 0.1', '"bias": NaN'))
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]\.bias: must be finite"):
        Network.load(path)


def test_load_npz_rules(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(junk))}: not an edgegrad .npz network"):
        Network.load(junk)
    partial = tmp_path / "partial.npz"
    np.savez(partial, format=np.array("edgegrad.network/v1"), inputs=np.array(["x"]))
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(partial))}: not an edgegrad .npz network"):
        Network.load(partial)
    good = tmp_path / "good.npz"
    Network.from_dict(GOOD).save(good)
    with np.load(good) as z:
        arrays = dict(z)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**arrays, "format": np.array("other/v9")})
    with pytest.raises(InvalidInput, match=r"^format: expected 'edgegrad.network/v1'"):
        Network.load(bad)
    np.savez(bad, **{**arrays, "dst": np.array([2, 2, 3, 0])})
    with pytest.raises(InvalidInput, match=r"^edges\[3\]\.dst: 'x1' is an input"):
        Network.load(bad)
    np.savez(bad, **{**arrays, "weights": np.array([1.0, np.nan, 1.0, 1.0])})
    with pytest.raises(InvalidInput, match=r"^edges\[1\]\.weight: must be finite"):
        Network.load(bad)
    np.savez(bad, **{**arrays, "activations": np.array([0, 99, 0], dtype=np.uint8)})
    with pytest.raises(InvalidInput, match=rf"^{re.escape(str(bad))}: activation codes out of range"):
        Network.load(bad)


def test_numpy_scalars_count_as_numbers_and_huge_integers_are_not_finite() -> None:
    data = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "bias": np.float32(0.5)}],
            "edges": [{"src": "x", "dst": "y", "weight": np.int64(3)}]}
    net = Network.from_dict(data)
    assert net.biases[0] == 0.5 and net.weights[0] == 3.0
    data["nodes"][0]["bias"] = 10 ** 400
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]\.bias: must be finite"):
        Network.from_dict(data)


def test_a_key_repeated_in_a_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],'
                    ' "edges": [{"src": "x", "dst": "y", "weight": 1, "weight": 2}]}')
    with pytest.raises(InvalidInput, match=r"^edges\[0\]: key 'weight' appears twice$"):
        Network.load(path)


def test_kinds_in_messages_read_as_json_kinds(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "activation": {"name": "tanh"}}]}')
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]\.activation: expected a string, got an object$"):
        Network.load(path)
