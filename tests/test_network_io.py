"""Network round trips (dict, JSON, .npz), file order, vertex numbering and the content hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dags import network_seeds, permuted, random_inputs, random_network_dict
from hypothesis import given, settings

import edgegrad
from edgegrad import Network


@settings(max_examples=20, deadline=None)
@given(kw=network_seeds())
def test_dict_round_trip_is_an_identity(kw) -> None:
    data = random_network_dict(**kw)
    net = Network.from_dict(data)
    again = net.to_dict()
    assert Network.from_dict(again) == net
    assert again["format"] == "edgegrad.network/v1"
    assert [n["id"] for n in again["nodes"]] == [n["id"] for n in data["nodes"]]
    assert [(e["src"], e["dst"], e["weight"]) for e in again["edges"]] == \
        [(e["src"], e["dst"], e["weight"]) for e in data["edges"]]
    assert [n["bias"] for n in again["nodes"]] == [n.get("bias", 0.0) for n in data["nodes"]]
    json.dumps(again)  # plain JSON types only


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_and_load(tmp_path: Path, suffix: str) -> None:
    data = random_network_dict(8, n_nodes=12, n_outputs=3)
    net = Network.from_dict(data)
    path = tmp_path / f"net{suffix}"
    net.save(path)
    loaded = Network.load(path)
    assert loaded == net and loaded.content_hash == net.content_hash
    assert loaded.vertex_ids == net.vertex_ids and loaded.activations == net.activations
    np.testing.assert_array_equal(loaded.weights, net.weights)   # bit-exact, also through JSON
    np.testing.assert_array_equal(loaded.biases, net.biases)
    X = random_inputs(8, 3, net.n_inputs)
    assert edgegrad.gradients(loaded, X) == edgegrad.gradients(net, X)
    Network.load(str(path))  # str paths too


def test_json_file_is_the_contract_format(tmp_path: Path) -> None:
    net = Network.from_dict(random_network_dict(2))
    path = tmp_path / "n.json"
    net.save(path)
    on_disk = json.loads(path.read_text())
    assert set(on_disk) <= {"format", "inputs", "outputs", "nodes", "edges"}
    assert all(set(n) <= {"id", "activation", "bias"} for n in on_disk["nodes"])
    assert all(set(e) == {"src", "dst", "weight"} for e in on_disk["edges"])
    assert Network.from_dict(on_disk) == net


def test_arrays_follow_file_order_and_vertex_numbering() -> None:
    net = Network.from_dict({
        "inputs": ["b", "a"], "outputs": ["q", "p"],
        "nodes": [{"id": "q", "activation": "tanh", "bias": 0.5}, {"id": "p"}, {"id": "r", "bias": -1.0}],
        "edges": [{"src": "p", "dst": "q", "weight": 3.0}, {"src": "a", "dst": "p", "weight": 2.0},
                  {"src": "r", "dst": "q", "weight": 4.0}, {"src": "b", "dst": "r", "weight": 1.0}]})
    assert net.vertex_ids == ("b", "a", "q", "p", "r")
    assert net.src.tolist() == [3, 1, 4, 0] and net.dst.tolist() == [2, 3, 2, 4]
    assert net.weights.tolist() == [3.0, 2.0, 4.0, 1.0] and net.biases.tolist() == [0.5, 0.0, -1.0]
    assert net.output_index.tolist() == [0, 1]
    assert net.edge_pairs() == [["p", "q"], ["a", "p"], ["r", "q"], ["b", "r"]]
    assert net.levels.tolist() == [0, 0, 2, 1, 1]
    assert (net.n_inputs, net.n_nodes, net.n_edges, net.n_outputs) == (2, 3, 4, 2)


def test_networks_are_immutable() -> None:
    net = Network.from_dict(random_network_dict(4))
    for arr in (net.weights, net.biases, net.src, net.dst):
        with pytest.raises(ValueError):
            arr[0] = 0
    with pytest.raises(TypeError):
        Network(["x"], ["y"], ["y"], ["identity"], [0.0], [], [], [])


def test_content_hash_sees_every_change_and_nothing_else() -> None:
    data = random_network_dict(6, n_nodes=8, n_outputs=2)
    base = Network.from_dict(data).content_hash
    assert Network.from_dict(json.loads(json.dumps(data))).content_hash == base
    changed = [
        dict(data, edges=[dict(data["edges"][0], weight=data["edges"][0]["weight"] + 1e-12)] + data["edges"][1:]),
        dict(data, nodes=[dict(data["nodes"][0], bias=data["nodes"][0].get("bias", 0.0) + 0.5)] + data["nodes"][1:]),
        dict(data, nodes=[dict(data["nodes"][0], activation="gauss" if data["nodes"][0]["activation"] != "gauss"
                               else "sin")] + data["nodes"][1:]),
        permuted(data, edge_perm=list(range(len(data["edges"])))[::-1]),   # same edges, new file order
        permuted(data, node_perm=list(range(len(data["nodes"])))[::-1]),
        dict(data, outputs=data["outputs"][::-1]),
    ]
    hashes = {Network.from_dict(d).content_hash for d in changed}
    assert base not in hashes and len(hashes) == len(changed)


def test_npz_is_compact_for_a_large_network(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_in, n = 50, 2000
    dst = np.repeat(np.arange(n_in, n_in + n), 10)
    src = np.concatenate([rng.choice(v, size=10, replace=False) for v in range(n_in, n_in + n)])
    net = Network.from_arrays([f"i{k}" for k in range(n_in)], [f"h{n - 1}"], [f"h{k}" for k in range(n)],
                              "tanh", rng.normal(size=n), src, dst, rng.normal(size=src.size))
    npz, js = tmp_path / "big.npz", tmp_path / "big.json"
    net.save(npz)
    net.save(js)
    assert npz.stat().st_size < js.stat().st_size / 3
    assert Network.load(npz) == net
