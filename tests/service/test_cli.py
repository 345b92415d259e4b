"""The ``edgegrad`` command, run as a real process: results, files, and every bad-input rule."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad import Network

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
XOR = str(EXAMPLES / "xor.json")
XOR_X = str(EXAMPLES / "xor-inputs.json")
XOR_T = str(EXAMPLES / "xor-targets.json")
CONTRACT = str(EXAMPLES / "contract.json")
SCRIPT = Path(sys.executable).parent / "edgegrad"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m edgegrad ARGS`` with captured text output."""
    return subprocess.run([sys.executable, "-m", "edgegrad", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def assert_bad(proc: subprocess.CompletedProcess, expected: str) -> None:
    """Exit 2, nothing on stdout, one ``error:`` line on stderr starting with ``expected``."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: " + expected), lines[0]
    assert "Traceback" not in proc.stderr


def grad_json(*args: str) -> dict:
    proc = run("grad", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads(proc.stdout)


# --------------------------------------------------------------- good runs
def test_xor_loss_mode_equals_in_process():
    out = grad_json(XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse")
    net = Network.load(XOR)
    x, t = json.loads(Path(XOR_X).read_text()), json.loads(Path(XOR_T).read_text())
    res = edgegrad.gradients(net, x, targets=t, loss="mse")
    assert list(out) == ["outputs", "loss", "edge_grads", "deltas", "edges", "nodes"]
    assert out["loss"] == res.loss  # exact: JSON floats round-trip
    assert out["edge_grads"] == res.edge_grads.tolist() and out["deltas"] == res.deltas.tolist()
    assert out["outputs"] == res.outputs.tolist()
    assert out["edges"] == net.edge_pairs() and out["nodes"] == list(net.node_ids)


def test_contract_output_mode_shapes_and_values(tmp_path):
    (tmp_path / "x.csv").write_text("x2,x1\n2,1\n0,0\n-1,0.5\n")  # header in another order
    out = grad_json(CONTRACT, "--inputs", str(tmp_path / "x.csv"))
    assert out["loss"] is None
    assert np.shape(out["outputs"]) == (3, 1)
    assert np.shape(out["edge_grads"]) == (3, 1, 4) and np.shape(out["deltas"]) == (3, 1, 2)
    # row 0 is x1 = 1, x2 = 2: z[h1] = 0.1 + 0.5 - 0.6 = 0, o[h1] = 1/2
    assert out["outputs"][0][0] == pytest.approx(1.2 * 0.5 + 0.7)
    assert out["edge_grads"][0][0] == pytest.approx([0.25 * 1.2 * 1, 0.25 * 1.2 * 2, 0.5, 1.0], rel=1e-15)
    assert out["deltas"][0][0] == pytest.approx([0.3, 1.0], rel=1e-15)


def test_npz_network_npy_inputs_out_npz(tmp_path):
    net = Network.load(XOR)
    net.save(tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", np.array([[0.0, 1.0], [1.0, 1.0]]))
    np.save(tmp_path / "t.npy", np.array([[1.0], [0.0]]))
    proc = run("grad", str(tmp_path / "net.npz"), "--inputs", str(tmp_path / "x.npy"), "--targets",
               str(tmp_path / "t.npy"), "--loss", "bce", "--per-example", "--out", str(tmp_path / "r.npz"))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    res = edgegrad.gradients(net, [[0.0, 1.0], [1.0, 1.0]], targets=[[1.0], [0.0]], loss="bce", per_example=True)
    with np.load(tmp_path / "r.npz") as z:
        assert float(z["loss"]) == res.loss
        assert np.array_equal(z["edge_grads"], res.edge_grads) and z["edge_grads"].shape == (2, 6)
        assert np.array_equal(z["deltas"], res.deltas)
        assert z["nodes"].tolist() == list(net.node_ids)


def test_out_json_reduction_sum_and_float32(tmp_path):
    target = tmp_path / "r.json"
    proc = run("grad", XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse", "--reduction", "sum",
               "--dtype", "float32", "--out", str(target))
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    out = json.loads(target.read_text())
    exact = grad_json(XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse", "--reduction", "sum")
    assert out["loss"] == pytest.approx(exact["loss"], rel=1e-5)
    assert out["edge_grads"] == pytest.approx(exact["edge_grads"], rel=1e-4, abs=1e-6)
    mean = grad_json(XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse")
    assert exact["loss"] == pytest.approx(4 * mean["loss"], rel=1e-15)  # B·K = 4


def test_console_script_and_version():
    assert SCRIPT.exists(), "the edgegrad console script is not installed in this environment"
    proc = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"edgegrad {edgegrad.__version__}"
    proc = subprocess.run([str(SCRIPT), "grad", CONTRACT, "--inputs", XOR_X], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["nodes"] == ["h1", "y"]


def test_grad_does_not_import_the_service_modules():
    code = (f"import sys; from edgegrad.cli import main; rc = main(['grad', {CONTRACT!r}, '--inputs', {XOR_X!r}]);"
            "bad = [m for m in sys.modules if m.startswith(('edgegrad.server', 'edgegrad.worker', 'grpc'))];"
            "sys.exit(rc or (3 if bad else 0))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_explain_command():
    proc = run("explain", CONTRACT, "--edge", "x1", "h1", "--inputs", XOR_X, "--row", "3")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    net = Network.load(CONTRACT)
    expected = edgegrad.gradients(net, json.loads(Path(XOR_X).read_text())).edge_grads[3, 0, 0]
    final = [line for line in proc.stdout.splitlines() if line.startswith("∂P/∂w(x1,h1) = ")]
    assert len(final) == 1 and float(final[0].rsplit("= ", 1)[1]) == pytest.approx(expected, rel=1e-9)
    assert "depends on the output's activation? yes" in proc.stdout


def test_explain_loss_mode_command():
    proc = run("explain", XOR, "--edge", "or", "xor", "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse")
    assert proc.returncode == 0, proc.stderr
    assert "direct term: ∂L/∂o[xor] = (2·(o[xor] − t))/(4·1)" in proc.stdout


# ---------------------------------------------------------------- bad input
def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def net_text(**changes) -> str:
    data = json.loads(Path(CONTRACT).read_text())
    data.update(changes)
    return json.dumps(data)


def test_bad_network_files(tmp_path):
    edges = json.loads(Path(CONTRACT).read_text())["edges"]
    broken = [dict(e) for e in edges]
    broken[3]["dst"] = "h9"
    assert_bad(run("grad", write(tmp_path, "n.json", net_text(edges=broken)), "--inputs", XOR_X),
               "edges[3].dst: unknown node 'h9'")
    cyc = edges + [{"src": "y", "dst": "h1", "weight": 1.0}]
    proc = run("grad", write(tmp_path, "c.json", net_text(edges=cyc)), "--inputs", XOR_X)
    assert_bad(proc, "cycle: ")
    assert proc.stderr.strip() in ("error: cycle: h1 -> y -> h1", "error: cycle: y -> h1 -> y")
    typo = [dict(e) for e in edges]
    typo[0]["wieght"] = typo[0].pop("weight")
    assert_bad(run("grad", write(tmp_path, "t.json", net_text(edges=typo)), "--inputs", XOR_X),
               "edges[0]: unknown key 'wieght'")
    assert_bad(run("grad", write(tmp_path, "j.json", "{"), "--inputs", XOR_X), f"{tmp_path / 'j.json'}: not valid JSON")
    assert_bad(run("grad", str(tmp_path / "missing.json"), "--inputs", XOR_X),
               f"{tmp_path / 'missing.json'}: cannot read")
    assert_bad(run("explain", str(tmp_path / "missing.json"), "--edge", "a", "b"),
               f"{tmp_path / 'missing.json'}: cannot read")


def test_bad_inputs_and_targets(tmp_path):
    assert_bad(run("grad", CONTRACT, "--inputs", XOR_T), f"{XOR_T}: inputs: expected 2 columns (x1, x2) per row, got 1")
    nan = write(tmp_path, "x.json", "[[0, 1], [NaN, 2]]")
    assert_bad(run("grad", CONTRACT, "--inputs", nan), f"{nan}: inputs[1][0]: must be finite")
    assert_bad(run("grad", CONTRACT, "--inputs", str(tmp_path / "none.npy")), f"{tmp_path / 'none.npy'}: cannot read")
    three = write(tmp_path, "t.json", "[[1], [0], [1]]")
    assert_bad(run("grad", XOR, "--inputs", XOR_X, "--targets", three, "--loss", "mse"),
               "targets: has 3 rows but inputs has 4")
    big = write(tmp_path, "b.json", "[[2], [0], [1], [0]]")
    assert_bad(run("grad", XOR, "--inputs", XOR_X, "--targets", big, "--loss", "bce"),
               "targets[0][0]: bce needs targets in [0, 1]")


@pytest.mark.parametrize("args, expected", [
    (["grad", CONTRACT], "the following arguments are required: --inputs"),
    (["grad", CONTRACT, "--inputs", XOR_X, "--loss", "foo"], "argument --loss: invalid choice: 'foo'"),
    (["grad", XOR, "--inputs", XOR_X, "--targets", XOR_T], "--loss: required with --targets"),
    (["grad", XOR, "--inputs", XOR_X, "--loss", "mse"], "--targets: required with --loss"),
    (["grad", XOR, "--inputs", XOR_X, "--per-example"], "--per-example: only meaningful with --loss"),
    (["grad", XOR, "--inputs", XOR_X, "--reduction", "sum"], "--reduction: only meaningful with --loss"),
    (["grad", XOR, "--inputs", XOR_X, "--out", "r.txt"], "r.txt: unsupported result file type"),
    (["grad", XOR, "--inputs", XOR_X, "--dtype", "float16"], "argument --dtype: invalid choice"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
    (["explain", CONTRACT, "--edge", "x1", "h9"], "--edge: unknown node 'h9'"),
    (["explain", CONTRACT, "--edge", "y", "h1"], "--edge: no edge y -> h1 in the network"),
    (["explain", CONTRACT, "--edge", "x1", "h1", "--inputs", XOR_X, "--row", "4"], "--row: 4 out of range"),
    (["explain", CONTRACT, "--edge", "x1", "h1", "--row", "x"], "argument --row: invalid int value: 'x'"),
    (["explain", CONTRACT, "--edge", "x1", "h1", "--output", "h1"], "--output: 'h1' is not an output"),
    (["explain", XOR, "--edge", "a", "or", "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse",
      "--output", "xor"], "--output: only meaningful in output mode"),
])
def test_bad_command_lines(args, expected):
    assert_bad(run(*args), expected)


def test_unwritable_out_leaves_nothing(tmp_path):
    target = tmp_path / "no" / "such" / "r.json"
    assert_bad(run("grad", XOR, "--inputs", XOR_X, "--out", str(target)), f"{target}: cannot write")
    assert not (tmp_path / "no").exists()


def test_server_that_is_not_there():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run("grad", XOR, "--inputs", XOR_X, "--server", f"127.0.0.1:{port}")
    assert proc.returncode == 3 and proc.stdout == "", proc.stderr  # unreachable: 3, not bad input (2)
    assert proc.stderr.startswith(f"error: server 127.0.0.1:{port}: unreachable") and len(proc.stderr.splitlines()) == 1


def test_help_goes_to_stdout():
    proc = run("grad", "--help")
    assert proc.returncode == 0 and "--per-example" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("command", ["server", "worker", "up"])
def test_service_subcommands_get_their_own_options(command):
    proc = run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: edgegrad {command} [-h] [--"), proc.stdout  # options from its module


@pytest.mark.parametrize("args, shown", [(["batch"], "--shard-rows N"), (["jobs"], "watch"),
                                         (["jobs", "watch"], "--out OUT"), (["jobs", "list"], "--state")])
def test_batch_and_jobs_get_their_options_from_their_modules(args, shown):
    proc = run(*args, "--help")
    assert proc.returncode == 0 and shown in proc.stdout and proc.stderr == "", proc.stderr


def test_malformed_files_that_used_to_slip_through(tmp_path: Path) -> None:
    """Huge integers, empty or cut binary files, repeated keys, an empty --server: exit 2, named."""
    net = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
           "edges": [{"src": "x", "dst": "y", "weight": 2.0}]}
    good = tmp_path / "net.json"
    good.write_text(json.dumps(net))
    x = tmp_path / "x.json"
    x.write_text("[[1.0]]")
    big = tmp_path / "big.json"
    big.write_text(json.dumps(net).replace('"id": "y"}', '"id": "y", "bias": 1' + "0" * 400 + "}"))
    assert_bad(run("grad", str(big), "--inputs", str(x)), "nodes[0].bias: must be finite")
    big_x = tmp_path / "bigx.json"
    big_x.write_text("[[1" + "0" * 400 + "]]")
    assert_bad(run("grad", str(good), "--inputs", str(big_x)), f"{big_x}: inputs[0][0]: must be finite")
    empty_npy, empty_npz, cut_npz = tmp_path / "e.npy", tmp_path / "e.npz", tmp_path / "cut.npz"
    empty_npy.write_bytes(b"")
    empty_npz.write_bytes(b"")
    Network.from_dict(net).save(str(tmp_path / "whole.npz"))
    cut_npz.write_bytes((tmp_path / "whole.npz").read_bytes()[:30])
    assert_bad(run("grad", str(good), "--inputs", str(empty_npy)), f"{empty_npy}: not a readable .npy array")
    assert_bad(run("grad", str(empty_npz), "--inputs", str(x)), f"{empty_npz}: not an edgegrad .npz network")
    assert_bad(run("grad", str(cut_npz), "--inputs", str(x)), f"{cut_npz}: not an edgegrad .npz network")
    dup = tmp_path / "dup.json"
    dup.write_text('{"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "bias": 0.1, "bias": 0.2}]}')
    assert_bad(run("grad", str(dup), "--inputs", str(x)), "nodes[0]: key 'bias' appears twice")
    assert_bad(run("grad", str(good), "--inputs", str(x), "--server", ""), "--server: expected HOST:PORT")


def test_a_byte_order_mark_is_fine_and_results_are_ordinary_files(tmp_path: Path) -> None:
    net = tmp_path / "bom.json"
    net.write_bytes(b"\xef\xbb\xbf" + Path(CONTRACT).read_bytes())
    out = tmp_path / "r.json"
    proc = run("grad", str(net), "--inputs", XOR_X, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_grad_indent_pretty_prints_the_same_json(tmp_path):
    plain = run("grad", XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse")
    pretty = run("grad", XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse", "--indent")
    four = run("grad", XOR, "--inputs", XOR_X, "--indent", "4", "--out", str(tmp_path / "r.json"))
    assert plain.returncode == pretty.returncode == four.returncode == 0, pretty.stderr + four.stderr
    assert len(plain.stdout.splitlines()) == 1 and pretty.stdout.startswith('{\n  "outputs": [\n')
    assert json.loads(pretty.stdout) == json.loads(plain.stdout)
    assert (tmp_path / "r.json").read_text().startswith('{\n    "outputs"')
    assert_bad(run("grad", XOR, "--inputs", XOR_X, "--indent", "-1"), "--indent: must be between 0 and 16")
