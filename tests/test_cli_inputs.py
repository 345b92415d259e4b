"""``--inputs -`` reads JSON rows from standard input; ``--indent`` keeps each row of numbers on one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad.cli import main

ROOT = Path(__file__).resolve().parent.parent
XOR = str(ROOT / "examples" / "xor.json")
XOR_X = str(ROOT / "examples" / "xor-inputs.json")
XOR_T = str(ROOT / "examples" / "xor-targets.json")


def _grad(args: list[str], capsys: pytest.CaptureFixture, stdin: str | None = None,
          monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(["grad", XOR, *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_inputs_from_stdin_equal_the_same_rows_from_a_file(capsys, monkeypatch) -> None:
    rows = Path(XOR_X).read_text()
    status, out, err = _grad(["--inputs", "-", "--targets", XOR_T, "--loss", "mse"], capsys, rows, monkeypatch)
    assert status == 0 and err == "", err
    _, from_file, _ = _grad(["--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse"], capsys)
    assert out == from_file


def test_targets_from_stdin(capsys, monkeypatch) -> None:
    status, out, err = _grad(["--inputs", XOR_X, "--targets", "-", "--loss", "mse"], capsys, "[[0], [1], [1], [0]]",
                             monkeypatch)
    expected = edgegrad.gradients(edgegrad.Network.load(XOR), json.loads(Path(XOR_X).read_text()),
                                  targets=[[0], [1], [1], [0]], loss="mse")
    assert status == 0 and json.loads(out)["loss"] == expected.loss, err


@pytest.mark.parametrize("text, expected", [("[[0, 1], [1", "error: <stdin>: not valid JSON"),
                                            ("{}", "error: <stdin>: inputs: expected a list of rows"),
                                            ("[[0, 1, 2]]", "error: <stdin>: inputs: expected 2 columns"),
                                            ("[]", "error: <stdin>: inputs: no rows")])
def test_bad_rows_on_stdin_are_named(text: str, expected: str, capsys, monkeypatch) -> None:
    status, out, err = _grad(["--inputs", "-"], capsys, text, monkeypatch)
    assert status == 2 and out == "" and err.startswith(expected) and len(err.splitlines()) == 1, err


def test_inputs_and_targets_cannot_both_read_stdin(capsys, monkeypatch) -> None:
    status, out, err = _grad(["--inputs", "-", "--targets", "-", "--loss", "mse"], capsys, "[[0, 1]]", monkeypatch)
    assert status == 2 and err.startswith("error: --targets: only one of --inputs and --targets"), err


@pytest.mark.parametrize("indent", [None, 0, 4])
def test_indent_keeps_each_row_of_numbers_on_one_line(indent: int | None, capsys) -> None:
    flag = ["--indent"] if indent is None else ["--indent", str(indent)]
    status, out, err = _grad(["--inputs", XOR_X, *flag], capsys)
    assert status == 0, err
    _, compact, _ = _grad(["--inputs", XOR_X], capsys)
    assert json.loads(out) == json.loads(compact)
    lines = out.splitlines()
    net, x = edgegrad.Network.load(XOR), np.array(json.loads(Path(XOR_X).read_text()))
    res = edgegrad.gradients(net, x)
    for b in range(x.shape[0]):  # every row of the B×K×E Jacobian is one line
        assert sum(line.strip().rstrip(",") == json.dumps(res.edge_grads[b, 0].tolist()) for line in lines) == 1
    # outputs, edge_grads and deltas: a line per row and a few brackets; edges: a line per edge
    assert len(lines) < 12 * x.shape[0] + net.n_edges + 10, out
    pad = " " * (2 if indent is None else indent)
    assert lines[1] == f'{pad}"outputs": [' and lines[-2] == f'{pad}"nodes": {json.dumps(list(net.node_ids))}'
