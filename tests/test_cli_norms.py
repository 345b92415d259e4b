"""``edgegrad grad --norms / --clip-norm``: each example's gradient norm and the clipped sum, in every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad.cli import main

ROOT = Path(__file__).resolve().parent.parent
XOR = str(ROOT / "examples" / "xor.json")
X = str(ROOT / "examples" / "xor-inputs.json")
T = str(ROOT / "examples" / "xor-targets.json")


def _expected(**kw) -> edgegrad.GradientResult:
    net = edgegrad.Network.load(XOR)
    x, t = json.loads(Path(X).read_text()), json.loads(Path(T).read_text())
    return edgegrad.gradients(net, x, targets=t, loss="mse", **kw)


def test_grad_writes_norms_and_the_clipped_sum_as_json(capsys, monkeypatch) -> None:
    monkeypatch.delenv("EDGEGRAD_SERVER", raising=False)
    assert main(["grad", XOR, "--inputs", X, "--targets", T, "--loss", "mse", "--clip-norm", "0.05"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = _expected(clip_norm=0.05)
    np.testing.assert_allclose(got["norms"], want.norms, rtol=1e-15)
    np.testing.assert_allclose(got["edge_grads"], want.edge_grads, rtol=1e-15)
    assert want.edge_grads.tolist() != _expected().edge_grads.tolist()   # the clip bites on this batch
    assert main(["grad", XOR, "--inputs", X, "--targets", T, "--loss", "mse"]) == 0
    assert "norms" not in json.loads(capsys.readouterr().out)


def test_grad_writes_norms_into_an_npz(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("EDGEGRAD_SERVER", raising=False)
    out = tmp_path / "r.npz"
    assert main(["grad", XOR, "--inputs", X, "--targets", T, "--loss", "mse", "--norms", "--out", str(out)]) == 0
    with np.load(out) as r:
        np.testing.assert_allclose(r["norms"], _expected(norms=True).norms, rtol=1e-15)


@pytest.mark.parametrize("flags, message", [
    (["--clip-norm", "0"], "--clip-norm: must be finite and > 0, got 0.0"),
    (["--clip-norm", "nan"], "--clip-norm: must be finite and > 0, got nan"),
    (["--clip-norm", "-2", "--loss", "mse", "--targets", T], "--clip-norm: must be finite and > 0, got -2.0"),
    (["--norms"], "--norms: per-example norms and clipping need --loss"),
])
def test_bad_norm_flags_exit_2_naming_the_flag(flags, message, capsys, monkeypatch) -> None:
    monkeypatch.delenv("EDGEGRAD_SERVER", raising=False)
    assert main(["grad", XOR, "--inputs", X, *flags]) == 2
    assert message in capsys.readouterr().err
