"""IdIndex against a plain dict (every road inside it forced), the graph checks against a scalar reference,
and from_arrays with string ids (lists, numpy arrays, odd items) against from_arrays with indices."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from dags import random_network
from hypothesis import given, settings
from hypothesis import strategies as st

import edgegrad.model.ids as ids_module
from edgegrad import InvalidInput, Network
from edgegrad.model.graph import check_edges, edge_keys, topological_levels
from edgegrad.model.ids import IdIndex

ID_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=6)


def reference_positions(ids: list[str], names: list[str] | np.ndarray) -> list[int] | None:
    """What from_arrays did: ``np.asarray(names).tolist()``, each looked up in a dict of the ids."""
    index = {v: i for i, v in enumerate(ids)}
    try:
        return [index[v] for v in np.asarray(names).tolist()]
    except KeyError:
        return None


def _check(ix: IdIndex, ids: list[str], names: list[str]) -> None:
    expected = reference_positions(ids, names)
    for given_names in (names, np.asarray(names)):
        got = ix.positions(given_names)
        assert (got is None) == (expected is None), (names, got, expected)
        if expected is not None:
            assert got.dtype == np.int64 and got.tolist() == expected


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(ID_TEXT, min_size=1, max_size=30, unique=True), data=st.data())
def test_positions_agree_with_a_dict(ids: list[str], data: st.DataObject) -> None:
    known = st.sampled_from(ids)
    near = known.flatmap(lambda v: st.sampled_from([v[:-1] or "?", v + "x", v + "\0", "x" + v, v.upper()]))
    names = data.draw(st.lists(st.one_of(known, known, known, near, ID_TEXT), min_size=1, max_size=40))
    _check(IdIndex(ids), ids, names)


@pytest.mark.parametrize("weak_hash", [
    lambda rows: np.zeros(rows.shape[0], dtype=np.uint64),                       # every id collides
    lambda rows: rows[:, 0].astype(np.uint64) << np.uint64(58),                  # ids share table slots
    lambda rows: (rows.sum(axis=1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)),  # word sums collide
], ids=["one hash", "first word", "word sums"])
def test_weak_hashes_change_the_road_not_the_answer(monkeypatch: pytest.MonkeyPatch, weak_hash: Any) -> None:
    monkeypatch.setattr(ids_module, "_row_hashes", weak_hash)
    rng = np.random.default_rng(0)
    ids = ["ab", "ba", "abc", "cab", "x", "y1", "1y", "zz", "za", "az"] + [f"n{i}" for i in range(200)]
    names = [ids[i] for i in rng.integers(0, len(ids), 500)]
    _check(IdIndex(ids), ids, names)
    _check(IdIndex(ids), ids, names + ["bac"])            # not an id


@pytest.mark.parametrize("shift, settled_by", [(60, "binary search"), (44, "second table")])
def test_shared_slots_are_settled(monkeypatch: pytest.MonkeyPatch, shift: int, settled_by: str) -> None:
    # distinct hashes that agree in the top bits the first table is addressed by
    monkeypatch.setattr(ids_module, "_row_hashes",
                        lambda words: words[:, 0] + (words[:, 0] << np.uint64(shift)))
    ids = [f"{chr(97 + i % 26)}{i % 3}" for i in range(78)]
    ix = IdIndex(ids)
    first, second = ix._tables
    assert ix._dict is None and np.any(first._slots == ids_module._SHARED)
    assert np.any(second._slots == ids_module._SHARED) == (settled_by == "binary search")
    _check(ix, ids, ids[::-1] * 3)
    _check(ix, ids, ids + ["a9", "zz"])


def test_a_name_whose_hash_matches_an_id_is_still_not_that_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # a hash of the first character alone: "az" hashes as "ab" does
    monkeypatch.setattr(ids_module, "_row_hashes",
                        lambda words: (words[:, 0] & np.uint64(0xFF)) * np.uint64(0x9E3779B97F4A7C15))
    ids = ["ab", "cd", "x"]
    ix = IdIndex(ids)
    assert ix._dict is None                                # the ids' hashes differ: the table road
    assert ix.positions(["cd", "ab", "x"]).tolist() == [1, 0, 2]
    assert ix.positions(["ab", "az"]) is None and ix.positions(np.array(["cz"])) is None


def test_names_and_ids_with_nuls_are_read_as_numpy_strings() -> None:
    ids = ["a", "b\0c", "d"]
    ix = IdIndex(ids)
    assert ix._dict is not None                            # an id holding a NUL: the dict road
    _check(ix, ids, ["a", "b\0c", "d"])
    ids = ["a", "b", "ab"]
    _check(IdIndex(ids), ids, ["a\0", "b", "ab\0\0"])       # trailing NULs dropped, as numpy does
    _check(IdIndex(ids), ids, ["a\0b"])


def test_long_names_and_odd_items() -> None:
    ix = IdIndex(["a", "bb"])
    assert ix.positions(["bb" * 1000]) is None
    assert ix.positions(np.array(["bbb", "a"])) is None
    assert ix.positions(np.array(["bb", "a", "bb"], dtype="<U40")).tolist() == [1, 0, 1]
    assert ix.positions(["a", 1]) is None
    assert ix.positions([]).tolist() == []
    assert IdIndex([]).positions(["a"]) is None
    with pytest.raises(TypeError):
        ix.positions(np.array([0, 1]))


# ------------------------------------------------------------------ graph
def reference_levels(src: list[int], dst: list[int], n_vertices: int, n_inputs: int) -> list[int] | None:
    """Longest-path levels by repeated relaxation; None on a cycle."""
    level = [0] * n_inputs + [1] * (n_vertices - n_inputs)
    for _ in range(n_vertices + 1):
        changed = False
        for s, d in zip(src, dst):
            if level[d] < level[s] + 1:
                level[d] = level[s] + 1
                changed = True
        if not changed:
            return level
    return None


@settings(max_examples=100, deadline=None)
@given(n_inputs=st.integers(1, 4), n_nodes=st.integers(1, 12), data=st.data())
def test_levels_agree_with_a_scalar_reference(n_inputs: int, n_nodes: int, data: st.DataObject) -> None:
    n = n_inputs + n_nodes
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(n_inputs, n - 1)), unique=True, max_size=40))
    pairs = [(s, d) for s, d in pairs if s != d]
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    dst = np.array([p[1] for p in pairs], dtype=np.int64)
    ids = [f"v{i}" for i in range(n)]
    expected = reference_levels(src.tolist(), dst.tolist(), n, n_inputs)
    keys = check_edges(src, dst, n_inputs, ids)
    assert keys.tolist() == sorted((src * n + dst).tolist()) and np.array_equal(keys, edge_keys(src, dst, n))
    for given_keys in (None, keys):
        if expected is None:
            with pytest.raises(InvalidInput, match=r"^cycle: "):
                topological_levels(src, dst, n, n_inputs, ids, given_keys)
        else:
            assert topological_levels(src, dst, n, n_inputs, ids, given_keys).tolist() == expected


def test_first_repeated_edge_is_named_with_its_earlier_twin() -> None:
    src = np.array([0, 1, 0, 1, 0])
    dst = np.array([2, 2, 3, 2, 3])
    with pytest.raises(InvalidInput, match=re.escape("edges[3]: duplicate edge b -> c (same as edges[1])")):
        check_edges(src, dst, 2, ["a", "b", "c", "d"])


# ------------------------------------------------------------------ from_arrays with string ids
@pytest.mark.parametrize("seed", range(4))
def test_string_ids_as_lists_arrays_and_tuples_give_the_index_network(seed: int) -> None:
    net = random_network(seed, n_nodes=12)
    ids = net.vertex_ids
    src, dst = [ids[i] for i in net.src.tolist()], [ids[i] for i in net.dst.tolist()]
    args = (list(net.inputs), list(net.outputs), list(net.node_ids), list(net.activations), net.biases)
    for s, d in ((src, dst), (np.array(src), np.array(dst)), (tuple(src), tuple(dst)),
                 (np.array(src, dtype=object), np.array(dst, dtype=object)), (src, net.dst)):
        assert Network.from_arrays(*args, s, d, net.weights) == net


@pytest.mark.parametrize("src, message", [
    (["x1", "x2", "q"], "edges[2].src: unknown node 'q'"),
    ([0, "x2", "h"], "edges[0].src: unknown node '0'"),            # numpy makes every item a string
    (["x1", None, "h"], "edges[1].src: expected a node id string, got null"),
    (np.array(["x1", "x2", "hh"]), "edges[2].src: unknown node 'hh'"),
    (["x1", "x2", "h" * 50], f"edges[2].src: unknown node '{'h' * 50}'"),
])
def test_from_arrays_messages_for_string_ids_are_unchanged(src: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Network.from_arrays(["x1", "x2"], ["y"], ["h", "y"], ["tanh", "identity"], [0.1, 0.0],
                            src, ["h", "h", "y"], [0.5, -0.5, 2.0])
    assert str(info.value) == message


def test_from_arrays_reads_trailing_nuls_as_numpy_does() -> None:
    args = (["x1", "x2"], ["y"], ["h", "y"], "tanh", None)
    plain = Network.from_arrays(*args, ["x1", "x2", "h"], ["h", "h", "y"], [1.0, 2.0, 3.0])
    assert Network.from_arrays(*args, ["x1\0", "x2", "h\0\0"], ["h", "h", "y"], [1.0, 2.0, 3.0]) == plain


@pytest.mark.parametrize("n_outputs", [1, 64, 65, 200])
def test_output_positions_for_few_and_many_outputs(n_outputs: int) -> None:
    rng = np.random.default_rng(n_outputs)
    node_ids = [f"n{i}" for i in range(300)]
    outputs = [node_ids[i] for i in rng.permutation(300)[:n_outputs]]
    net = Network.from_arrays(["x"], outputs, node_ids, "tanh", None, ["x"] * 300, node_ids, np.ones(300))
    assert net.output_index.tolist() == [node_ids.index(o) for o in outputs]
