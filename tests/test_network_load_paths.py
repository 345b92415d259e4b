"""Network.load's quick road against the exact road it replaced, on good and on generated bad documents.

The reference, ``exact_load``, is the reading Network.load did before the quick road: the file as
utf-8-sig text, ``json`` with the repeated-key hook, then ``from_dict``. Every document must give the
same network or the same message both ways, and each test also says which road the document must
take, so that a quick road that always gave up (and so always "agreed") would fail here.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dags import random_network_dict
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgegrad import InvalidInput, Network
from edgegrad.model.checks import JsonObject
from edgegrad.model.network_json import read_columns

BOM = b"\xef\xbb\xbf"


# ------------------------------------------------------------------ the reference and the comparison
def exact_load(path: Path) -> Network:
    """Network.load as it read JSON before the quick road existed."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh, object_pairs_hook=JsonObject.from_pairs)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc})") from None
    return Network.from_dict(data)


def outcome(load: Callable[[Path], Network], path: Path) -> tuple:
    """What a load gives, in a comparable form: the whole network, or the error's kind, message and field."""
    try:
        net = load(path)
    except InvalidInput as exc:
        return ("error", str(exc), exc.field)
    return ("network", net.content_hash, net.vertex_ids, net.activations, net.levels.tolist(),
            net.weights.view(np.int64).tolist(), net.biases.view(np.int64).tolist())


def check_same(raw: bytes, road: str | None) -> tuple:
    """Both loads agree on ``raw``; ``road`` is "quick", "exact" or None (either) for the road it must take."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.json"
        path.write_bytes(raw)
        ours, reference = outcome(Network.load, path), outcome(exact_load, path)
    assert ours == reference, raw[:2000]
    took = "exact" if read_columns(raw) is None else "quick"
    if road is not None:
        assert took == road, (took, ours[:2], raw[:2000])
    return ours


# ------------------------------------------------------------------ a writer that can repeat keys
class Obj(list):
    """A JSON object as a list of (key, value) pairs, so that a key may appear twice."""


class Raw(str):
    """Text written into the document as it is (NaN, 1e400, a huge integer)."""


def tree(value: Any) -> Any:
    """A parsed document as Obj/list/scalars."""
    if isinstance(value, dict):
        return Obj((k, tree(v)) for k, v in value.items())
    if isinstance(value, list):
        return [tree(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None, ascii_only: bool = False, level: int = 0) -> str:
    """JSON text for an Obj/list tree; ``indent`` None writes it compactly."""
    pad = "" if indent is None else "\n" + " " * (indent * (level + 1))
    end = "" if indent is None else "\n" + " " * (indent * level)
    sep = "," if indent is None else ","
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Obj):
        items = [f"{pad}{json.dumps(k, ensure_ascii=ascii_only)}: {dumps(v, indent, ascii_only, level + 1)}"
                 for k, v in value]
        return "{" + sep.join(items) + (end if items else "") + "}"
    if isinstance(value, list):
        items = [pad + dumps(v, indent, ascii_only, level + 1) for v in value]
        return "[" + sep.join(items) + (end if items else "") + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def get(obj: Obj, key: str) -> Any:
    return next(v for k, v in obj if k == key)


def _list(obj: Obj, key: str) -> list:
    """The list under ``key``; TypeError when an earlier problem made it something else (an object)."""
    value = get(obj, key)
    if isinstance(value, Obj) or not isinstance(value, list):
        raise TypeError(f"{key} is no longer a list")
    return value


def put(obj: Obj, key: str, value: Any) -> None:
    for i, (k, _) in enumerate(obj):
        if k == key:
            obj[i] = (key, value)
            return
    obj.append((key, value))


def drop(obj: Obj, key: str) -> None:
    obj[:] = [(k, v) for k, v in obj if k != key]


def base(seed: int, **kw: Any) -> Obj:
    return tree(random_network_dict(seed, **kw))


def encode(doc: Any, indent: int | None = 1, ascii_only: bool = False) -> bytes:
    return dumps(doc, indent, ascii_only).encode("utf-8")


# ------------------------------------------------------------------ good documents take the quick road
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_nodes=st.integers(4, 14), indent=st.sampled_from([None, 0, 1, 2]),
       shuffle_keys=st.booleans(), bom=st.booleans(), crlf=st.booleans())
def test_good_documents_take_the_quick_road_and_give_the_same_network(
        seed: int, n_nodes: int, indent: int | None, shuffle_keys: bool, bom: bool, crlf: bool) -> None:
    doc = base(seed, n_nodes=n_nodes)
    if shuffle_keys:
        rng = random.Random(seed)
        for obj in [doc, *get(doc, "nodes"), *get(doc, "edges")]:
            rng.shuffle(obj)
    raw = encode(doc, indent)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    check_same(BOM + raw if bom else raw, "quick")


def test_the_saved_form_takes_the_quick_road(tmp_path: Path) -> None:
    net = Network.from_dict(random_network_dict(3, n_nodes=20))
    net.save(tmp_path / "n.json")
    raw = (tmp_path / "n.json").read_bytes()
    assert check_same(raw, "quick")[1] == net.content_hash


def test_optional_fields_may_be_absent() -> None:
    doc = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}]}
    check_same(json.dumps(doc).encode(), "quick")
    doc["edges"] = [{"weight": 2, "dst": "y", "src": "x"}]
    check_same(json.dumps(doc).encode(), "quick")


@pytest.mark.parametrize("ident", ["a:b", "::", "ä:ö", "id with spaces", "x\u00e9\u4e2d\U0001f600", "{\"}"[0:2]])
def test_odd_ids_read_alike(ident: str) -> None:
    doc = {"inputs": ["x:1", ident], "outputs": [ident + "out"],
           "nodes": [{"id": ident + "out", "activation": "tanh"}, {"id": "m:" + ident}],
           "edges": [{"src": ident, "dst": "m:" + ident, "weight": 1.5},
                     {"src": "m:" + ident, "dst": ident + "out", "weight": -2},
                     {"src": "x:1", "dst": ident + "out", "weight": 0.25}]}
    check_same(json.dumps(doc, ensure_ascii=False).encode(), None if '"' in ident else "quick")
    check_same(json.dumps(doc, ensure_ascii=True).encode(), None)   # \u escapes: a backslash


def test_escapes_take_the_exact_road() -> None:
    doc = base(5)
    raw = encode(doc).replace(b'"x0"', b'"\\u0078\\u0030"')
    check_same(raw, "exact")


# ------------------------------------------------------------------ repeated keys
def _dup_top(doc: Obj, rng: random.Random) -> None:
    key, value = rng.choice(list(doc))
    doc.insert(rng.randrange(len(doc) + 1), (key, value if rng.random() < 0.5 else []))


def _dup_node(doc: Obj, rng: random.Random) -> None:
    node = rng.choice(get(doc, "nodes"))
    key, value = rng.choice(list(node))
    node.insert(rng.randrange(len(node) + 1), (key, value))


def _dup_edge(doc: Obj, rng: random.Random) -> None:
    edge = rng.choice(get(doc, "edges"))
    key, value = rng.choice(list(edge))
    edge.insert(rng.randrange(len(edge) + 1), (key, value if rng.random() < 0.5 else Obj([("k", 1), ("k", 2)])))


def _dup_hidden_in_a_value(doc: Obj, rng: random.Random) -> None:
    node = rng.choice(get(doc, "nodes"))
    node.append(("activation", Obj([("name", "tanh"), ("name", "relu")])))


def _dup_with_colon_ids(doc: Obj, rng: random.Random) -> None:
    """Ids full of ':' so that counting separators must subtract the right number."""
    _rename(doc, lambda v: f"{v}:a:b")
    _dup_edge(doc, rng)


@pytest.mark.parametrize("mutate", [_dup_top, _dup_node, _dup_edge, _dup_hidden_in_a_value, _dup_with_colon_ids])
@pytest.mark.parametrize("seed", range(6))
def test_a_repeated_key_at_any_depth_is_refused_as_before(mutate: Callable, seed: int) -> None:
    doc = base(seed)
    mutate(doc, random.Random(seed))
    result = check_same(encode(doc, indent=None if seed % 2 else 1), "exact")
    assert result[0] == "error"


def test_repeated_key_message_is_the_exact_one() -> None:
    doc = tree({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
                "edges": [{"src": "x", "dst": "y", "weight": 1}]})
    get(doc, "edges")[0].append(("weight", 2))
    assert check_same(encode(doc), "exact")[1] == "edges[0]: key 'weight' appears twice"


# ------------------------------------------------------------------ every other kind of problem
def _rename(doc: Obj, new: Callable[[str], str]) -> None:
    """Rename every id everywhere."""
    put(doc, "inputs", [new(v) for v in get(doc, "inputs")])
    put(doc, "outputs", [new(v) for v in get(doc, "outputs")])
    for node in get(doc, "nodes"):
        put(node, "id", new(get(node, "id")))
    for edge in get(doc, "edges"):
        put(edge, "src", new(get(edge, "src")))
        put(edge, "dst", new(get(edge, "dst")))


def _some(doc: Obj, section: str, rng: random.Random) -> Obj:
    return rng.choice(get(doc, section))


FIELD_PROBLEMS: dict[str, Callable[[Obj, random.Random], Any]] = {
    "unknown src": lambda d, r: put(_some(d, "edges", r), "src", "nowhere"),
    "unknown dst": lambda d, r: put(_some(d, "edges", r), "dst", "x0x"),
    "unknown output": lambda d, r: put(d, "outputs", get(d, "outputs") + ["zz"]),
    "output is an input": lambda d, r: put(d, "outputs", ["x0"]),
    "no outputs": lambda d, r: put(d, "outputs", []),
    "repeated output": lambda d, r: put(d, "outputs", get(d, "outputs") * 2),
    "unknown activation": lambda d, r: put(_some(d, "nodes", r), "activation", "swish"),
    "activation null": lambda d, r: put(_some(d, "nodes", r), "activation", None),
    "activation number": lambda d, r: put(_some(d, "nodes", r), "activation", 3),
    "NaN weight": lambda d, r: put(_some(d, "edges", r), "weight", Raw("NaN")),
    "Infinity bias": lambda d, r: put(_some(d, "nodes", r), "bias", Raw("Infinity")),
    "-Infinity weight": lambda d, r: put(_some(d, "edges", r), "weight", Raw("-Infinity")),
    "overflowing float": lambda d, r: put(_some(d, "edges", r), "weight", Raw("1e400")),
    "overflowing negative float": lambda d, r: put(_some(d, "nodes", r), "bias", Raw("-2.5e999")),
    "huge integer weight": lambda d, r: put(_some(d, "edges", r), "weight", Raw("9" * 400)),
    "huge integer bias": lambda d, r: put(_some(d, "nodes", r), "bias", Raw("-1" + "0" * 330)),
    "string weight": lambda d, r: put(_some(d, "edges", r), "weight", "0.5"),
    "boolean weight": lambda d, r: put(_some(d, "edges", r), "weight", True),
    "null bias": lambda d, r: put(_some(d, "nodes", r), "bias", None),
    "list weight": lambda d, r: put(_some(d, "edges", r), "weight", [1.0]),
    "number src": lambda d, r: put(_some(d, "edges", r), "src", 0),
    "null dst": lambda d, r: put(_some(d, "edges", r), "dst", None),
    "number id": lambda d, r: put(_some(d, "nodes", r), "id", 7),
    "empty id": lambda d, r: put(_some(d, "nodes", r), "id", ""),
    "empty input": lambda d, r: put(d, "inputs", get(d, "inputs") + [""]),
    "repeated id": lambda d, r: put(_some(d, "nodes", r), "id", "x1"),
    "repeated input": lambda d, r: put(d, "inputs", get(d, "inputs") + ["x0"]),
    "missing weight": lambda d, r: drop(_some(d, "edges", r), "weight"),
    "missing src": lambda d, r: drop(_some(d, "edges", r), "src"),
    "missing id": lambda d, r: drop(_some(d, "nodes", r), "id"),
    "missing nodes": lambda d, r: drop(d, "nodes"),
    "missing inputs": lambda d, r: drop(d, "inputs"),
    "unknown edge key": lambda d, r: _some(d, "edges", r).append(("wieght", 1.0)),
    "unknown node key": lambda d, r: _some(d, "nodes", r).append(("bais", 1.0)),
    "unknown top key": lambda d, r: d.append(("edge", [])),
    "edge not an object": lambda d, r: _list(d, "edges").insert(r.randrange(3), ["x0", "n1", 1.0]),
    "node not an object": lambda d, r: _list(d, "nodes").append("n99"),
    "edges an object": lambda d, r: put(d, "edges", Obj()),
    "inputs a string": lambda d, r: put(d, "inputs", "x0"),
    "wrong format": lambda d, r: put(d, "format", "edgegrad.network/v2"),
    "format a number": lambda d, r: put(d, "format", 1),
    "not an object": lambda d, r: None,          # the test writes a list instead of the document
}

STRUCTURE_PROBLEMS: dict[str, Callable[[Obj, random.Random], Any]] = {
    "self-loop": lambda d, r: _list(d, "edges").insert(r.randrange(5), Obj([("src", "n3"), ("dst", "n3"), ("weight", 1.0)])),
    "edge into an input": lambda d, r: _list(d, "edges").append(Obj([("src", "n2"), ("dst", "x1"), ("weight", 1.0)])),
    "repeated edge": lambda d, r: _list(d, "edges").append(
        Obj([(k, v if k != "weight" else 9.0) for k, v in _some(d, "edges", r)])),
    "two-node cycle": lambda d, r: _reverse_an_edge(d, r),
}


def _reverse_an_edge(doc: Obj, rng: random.Random) -> None:
    inputs = set(get(doc, "inputs"))
    edge = rng.choice([e for e in get(doc, "edges") if get(e, "src") not in inputs])
    _list(doc, "edges").insert(rng.randrange(len(get(doc, "edges")) + 1),
                             Obj([("src", get(edge, "dst")), ("dst", get(edge, "src")), ("weight", 0.5)]))


@pytest.mark.parametrize("kind", sorted(FIELD_PROBLEMS))
@pytest.mark.parametrize("seed", range(3))
def test_each_field_problem_falls_back_to_the_exact_message(kind: str, seed: int) -> None:
    doc = base(seed, n_nodes=8)
    FIELD_PROBLEMS[kind](doc, random.Random(seed))
    if kind == "not an object":
        raw = b"[1, 2]"
    else:
        raw = encode(doc, indent=1 if seed else None)
    result = check_same(raw, "exact")
    assert result[0] == "error"


@pytest.mark.parametrize("kind", sorted(STRUCTURE_PROBLEMS))
@pytest.mark.parametrize("seed", range(3))
def test_graph_problems_are_found_on_the_quick_road_with_the_same_message(kind: str, seed: int) -> None:
    doc = base(seed, n_nodes=8)
    STRUCTURE_PROBLEMS[kind](doc, random.Random(seed))
    result = check_same(encode(doc), "quick")
    assert result[0] == "error"


@pytest.mark.parametrize("raw", [
    b"", b"{", b'{"inputs": ["x"], ', BOM + BOM + b'{"inputs": []}', b"\xff\xfe\x00garbage",
    b'{"inputs": ["x\xff"], "outputs": ["y"], "nodes": [{"id": "y"}]}',
    b'{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}]} extra',
    b'{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y\x01"}]}',
    b'{"inputs": ["x"],\r\n "outputs": ["y"], "nodes": [{"id": "y", "bias": 01}]}',
    b'{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],}',
], ids=["empty", "open brace", "cut short", "two BOMs", "binary", "bad utf-8", "extra data",
        "control character", "leading zero", "trailing comma"])
def test_documents_that_are_not_json_fall_back_to_the_exact_message(raw: bytes) -> None:
    result = check_same(raw, "exact")
    assert result[0] == "error" and "not valid JSON" in result[1]


# ------------------------------------------------------------------ hypothesis: any problem, any place
ALL_PROBLEMS = {**FIELD_PROBLEMS, **STRUCTURE_PROBLEMS, "repeat top key": _dup_top, "repeat node key": _dup_node,
                "repeat edge key": _dup_edge, "repeat hidden key": _dup_hidden_in_a_value}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), kinds=st.lists(st.sampled_from(sorted(ALL_PROBLEMS)), min_size=1, max_size=3),
       indent=st.sampled_from([None, 1]), colons=st.booleans(), bom=st.booleans())
@example(seed=0, kinds=["edges an object", "edge into an input"], indent=None, colons=False, bom=False)
def test_generated_bad_documents_give_the_exact_message(seed: int, kinds: list[str], indent: int | None,
                                                        colons: bool, bom: bool) -> None:
    doc = base(seed % 1000, n_nodes=6 + seed % 7)
    rng = random.Random(seed)
    applied = set()
    for kind in kinds:
        if kind == "not an object":
            continue
        try:
            ALL_PROBLEMS[kind](doc, rng)
        except (StopIteration, IndexError, AttributeError, TypeError, ValueError):
            continue                              # an earlier problem removed what this one needs
        applied.add(kind)
    if colons:
        try:
            _rename(doc, lambda v: v + ":" if isinstance(v, str) and v else v)
        except (StopIteration, AttributeError, TypeError, ValueError):
            pass                                  # a section the problems made unrenamable
    raw = encode(doc, indent)
    road = "quick" if applied and applied <= set(STRUCTURE_PROBLEMS) else "exact" if applied else None
    result = check_same(BOM + raw if bom else raw, road)
    if applied:
        assert result[0] == "error"


# ------------------------------------------------------------------ numbers read to the same bits
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["-0", "0", "-0.0", "4.9e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
                     "1.7976931348623157e308", "1.7976931348623158e308", "9007199254740993",
                     "18446744073709551615", "18446744073709551616", "-9223372036854775809",
                     "0.1e-400", "-1e-400", "123456789012345678901234567890e-300"]),
)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(NUMBER_TEXT, min_size=1, max_size=40), seed=st.integers(0, 10**6))
def test_numbers_read_to_the_same_bits(texts: list[str], seed: int) -> None:
    doc = base(seed, n_nodes=10)
    targets = [(e, "weight") for e in get(doc, "edges")] + [(n, "bias") for n in get(doc, "nodes")]
    random.Random(seed).shuffle(targets)
    used = texts[:len(targets)]
    for (obj, key), text in zip(targets, used):
        put(obj, key, Raw(text))
    result = check_same(encode(doc), None)
    finite = all(math.isfinite(float(t)) for t in used)
    assert (result[0] == "network") == finite, result[:2]
    if finite:
        assert read_columns(encode(doc)) is not None      # plain numbers take the quick road


def test_every_activation_and_defaults_read_alike() -> None:
    from edgegrad.model.activations import ACTIVATION_NAMES
    nodes = [{"id": f"n{i}", "activation": a} for i, a in enumerate(ACTIVATION_NAMES)] + [{"id": "plain"}]
    edges = [{"src": "x", "dst": n["id"], "weight": 1} for n in nodes]
    doc = {"inputs": ["x"], "outputs": ["plain"], "nodes": nodes, "edges": edges}
    check_same(json.dumps(doc).encode(), "quick")


# ------------------------------------------------------------------ byte-level edits: the two parsers agree
SMALL = json.dumps({"format": "edgegrad.network/v1", "inputs": ["x", "x2"], "outputs": ["y"],
                    "nodes": [{"id": "h", "activation": "tanh", "bias": -0.5}, {"id": "y"}],
                    "edges": [{"src": "x", "dst": "h", "weight": 1.25}, {"src": "h", "dst": "y", "weight": -2},
                              {"src": "x2", "dst": "y", "weight": 3e-3}]}).encode()
EDIT_BYTES = [bytes([b]) for b in b'{}[]":,\\ 019eE.-+tfnulrasxhy\x00\x01\x7f\xff\xc3\xa9\r\n\t\x0c'] + [BOM, b"\xed\xa0\x80"]


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "replace"]),
                                st.sampled_from(EDIT_BYTES)), min_size=1, max_size=3))
def test_byte_edits_give_the_same_outcome_both_ways(edits: list[tuple[float, str, bytes]]) -> None:
    raw = bytearray(SMALL)
    for where, how, what in edits:
        at = min(int(where * len(raw)), len(raw) - 1)
        if how == "insert":
            raw[at:at] = what
        elif how == "delete":
            del raw[at]
        else:
            raw[at:at + 1] = what
    check_same(bytes(raw), None)
