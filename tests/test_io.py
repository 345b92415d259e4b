"""Reading inputs/targets from .json/.npy/.csv and writing results as JSON or .npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgegrad import GradientResult, InvalidInput, Network
from edgegrad.cli.io import dumps_result, load_matrix, result_to_dict, save_result

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, name: str = "inputs", columns=None) -> str:
    with pytest.raises(InvalidInput) as info:
        load_matrix(path, name, columns)
    return info.value.message


# ------------------------------------------------------------------ reading
def test_json_rows(tmp_path):
    m = load_matrix(write(tmp_path, "x.json", "[[1, 2.5], [-3, 4e-3]]"))
    assert m.dtype == np.float64 and m.shape == (2, 2)
    assert m.tolist() == [[1.0, 2.5], [-3.0, 0.004]]


def test_npy_integer_and_float32_become_float64(tmp_path):
    for arr in (np.arange(6, dtype=np.int32).reshape(3, 2), np.full((2, 3), 0.1, dtype=np.float32)):
        np.save(tmp_path / "x.npy", arr)
        m = load_matrix(tmp_path / "x.npy")
        assert m.dtype == np.float64 and m.shape == arr.shape
        assert np.array_equal(m, arr.astype(np.float64))


def test_csv_plain_and_blank_lines(tmp_path):
    m = load_matrix(write(tmp_path, "x.csv", "1,2\n\n3, 4.5\n"))
    assert m.tolist() == [[1.0, 2.0], [3.0, 4.5]]


def test_csv_header_reorders_columns_to_network_order(tmp_path):
    path = write(tmp_path, "x.csv", "x2,x1\n1,2\n3,4\n")
    assert load_matrix(path, "inputs", ["x1", "x2"]).tolist() == [[2.0, 1.0], [4.0, 3.0]]
    # without known column names the header is just skipped
    assert load_matrix(path).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_csv_header_problems_name_the_column(tmp_path):
    path = write(tmp_path, "x.csv", "x1,x9\n1,2\n")
    assert error_of(path, "inputs", ["x1", "x2"]) == (
        f"{path}: header[1]: unknown column 'x9' (the network's inputs: x1, x2)")
    path = write(tmp_path, "t.csv", "y\n1\n")
    assert error_of(path, "targets", ["y", "z"]) == f"{path}: header: missing column 'z' for targets"
    path = write(tmp_path, "d.csv", "y,y\n1,2\n")
    assert "column 'y' appears twice" in error_of(path, "targets", ["y"])


@pytest.mark.parametrize("name, text, expected", [
    ("x.json", "[[1, 2], [3]]", "{p}: inputs[1]: expected 2 values like row 0, got 1"),
    ("x.json", "[[1, \"a\"]]", "{p}: inputs[0][1]: expected a number, got \"a\""),
    ("x.json", "[[1, true]]", "{p}: inputs[0][1]: expected a number, got true"),
    ("x.json", "[[1, null]]", "{p}: inputs[0][1]: expected a number, got null"),
    ("x.json", "[[1, [2]]]", "{p}: inputs[0][1]: expected a number, got a list"),
    ("x.json", "[1, 2]", "{p}: inputs[0]: expected a row (a list of numbers), got int"),
    ("x.json", "{\"x1\": [1]}", "{p}: inputs: expected a list of rows, got an object"),
    ("x.json", "[]", "{p}: inputs: no rows"),
    ("x.json", "[[1, NaN]]", "{p}: inputs[0][1]: must be finite, got nan"),
    ("x.json", "[[1e999, 0]]", "{p}: inputs[0][0]: must be finite, got inf"),
    ("x.csv", "1,2\n3,x\n", "{p}: line 2: inputs[1][1]: expected a number, got 'x'"),
    ("x.csv", "1,2\n3\n", "{p}: line 2: inputs[1]: expected 2 values like the first row, got 1"),
    ("x.csv", "1,inf\n", "{p}: inputs[0][1]: must be finite, got inf"),
    ("x.csv", "a,b\n", "{p}: inputs: no rows"),
    ("x.txt", "1,2\n", "{p}: unsupported file type '.txt' for inputs (expected .json, .npy or .csv)"),
])
def test_bad_files_name_file_and_place(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    assert error_of(path) == expected.format(p=path)


def test_bad_json_syntax(tmp_path):
    path = write(tmp_path, "x.json", "[[1, 2],")
    message = error_of(path)
    assert message.startswith(f"{path}: not valid JSON (")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    assert error_of(path, "targets") == f"{path}: cannot read targets (No such file or directory)"


def test_npy_problems(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(3.0))
    assert error_of(tmp_path / "v.npy") == (
        f"{tmp_path / 'v.npy'}: inputs: expected a 2-D array (rows × columns), got shape (3,)")
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    assert "expected a numeric array, got dtype <U1" in error_of(tmp_path / "s.npy")
    np.save(tmp_path / "o.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    assert error_of(tmp_path / "o.npy").startswith(f"{tmp_path / 'o.npy'}: not a readable .npy array")
    np.save(tmp_path / "n.npy", np.array([[1.0, np.nan]]))
    assert error_of(tmp_path / "n.npy") == f"{tmp_path / 'n.npy'}: inputs[0][1]: must be finite, got nan"
    write(tmp_path, "junk.npy", "not numpy at all")
    assert error_of(tmp_path / "junk.npy").startswith(f"{tmp_path / 'junk.npy'}: not a readable .npy array")


def test_examples_load():
    net = Network.load(EXAMPLES / "xor.json")
    x = load_matrix(EXAMPLES / "xor-inputs.json", "inputs", net.inputs)
    t = load_matrix(EXAMPLES / "xor-targets.json", "targets", net.outputs)
    assert x.shape == (4, net.n_inputs) and t.shape == (4, net.n_outputs)


# ------------------------------------------------------------------ writing
@pytest.fixture
def net() -> Network:
    return Network.load(EXAMPLES / "contract.json")


def output_mode_result() -> GradientResult:
    return GradientResult(outputs=np.array([[0.5], [1.5]]), loss=None,
                          edge_grads=np.arange(8.0).reshape(2, 1, 4) / 3, deltas=np.arange(4.0).reshape(2, 1, 2))


def test_result_dict_has_contract_fields(net):
    d = result_to_dict(net, output_mode_result())
    assert list(d) == ["outputs", "loss", "edge_grads", "deltas", "edges", "nodes"]
    assert d["loss"] is None
    assert d["edges"] == [["x1", "h1"], ["x2", "h1"], ["h1", "y"], ["x1", "y"]]
    assert d["nodes"] == ["h1", "y"]
    # floats survive the JSON text exactly
    back = json.loads(dumps_result(net, output_mode_result()))
    assert np.array_equal(np.array(back["edge_grads"]), np.arange(8.0).reshape(2, 1, 4) / 3)


def test_non_finite_values_become_null(net):
    res = GradientResult(outputs=np.array([[np.inf]]), loss=float("nan"),
                         edge_grads=np.array([1.0, np.nan, 2.0, 3.0]), deltas=np.array([0.0, -np.inf]))
    d = json.loads(dumps_result(net, res))
    assert d["outputs"] == [[None]] and d["loss"] is None
    assert d["edge_grads"] == [1.0, None, 2.0, 3.0] and d["deltas"] == [0.0, None]


def test_save_json_and_npz(tmp_path, net):
    res = output_mode_result()
    save_result(str(tmp_path / "r.json"), net, res)
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(dumps_result(net, res))
    save_result(str(tmp_path / "r.npz"), net, res)
    with np.load(tmp_path / "r.npz") as z:
        assert "loss" not in z.files
        assert np.array_equal(z["edge_grads"], res.edge_grads)
        assert z["edges"].tolist() == net.edge_pairs() and z["nodes"].tolist() == ["h1", "y"]
    loss_res = GradientResult(outputs=np.array([[0.5]]), loss=0.25, edge_grads=np.ones(4), deltas=np.ones(2))
    save_result(str(tmp_path / "l.npz"), net, loss_res)
    with np.load(tmp_path / "l.npz") as z:
        assert float(z["loss"]) == 0.25


def test_save_problems(tmp_path, net):
    with pytest.raises(InvalidInput, match=r"r\.txt: unsupported result file type"):
        save_result(str(tmp_path / "r.txt"), net, output_mode_result())
    with pytest.raises(InvalidInput, match=r"nodir.r\.json: cannot write"):
        save_result(str(tmp_path / "nodir" / "r.json"), net, output_mode_result())
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_column_count_checked_against_network_ids(tmp_path):
    path = write(tmp_path, "x.json", "[[1, 2, 3]]")
    assert error_of(path, "inputs", ["x1", "x2"]) == f"{path}: inputs: expected 2 columns (x1, x2) per row, got 3"
    np.save(tmp_path / "t.npy", np.zeros((2, 1)))
    assert error_of(tmp_path / "t.npy", "targets", ["y", "z"]) == (
        f"{tmp_path / 't.npy'}: targets: expected 2 columns (y, z) per row, got 1")
