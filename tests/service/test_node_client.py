"""examples/node: the Node.js client, built from ``edgegrad protos`` alone, against the real service.

Runs where ``node`` and ``npm`` are on PATH: the example's package.json is installed into a temp
folder (npm registry), then its answers must equal bit for bit what the service computes, in process
(``svc_helpers.served``: ``edgegrad.gradients``, or ``gradients_many`` for a small job).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import example_network, served

import edgegrad

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
NET = example_network(n_inputs=3, n_nodes=10, n_outputs=2, seed=21)
X = np.random.default_rng(22).normal(size=(7, 3))
T = np.random.default_rng(23).uniform(size=(7, 2))
XOR = edgegrad.Network.load(ROOT / "examples" / "xor.json")      # sigmoid outputs, for bce
XOR_X = np.array(json.loads((ROOT / "examples" / "xor-inputs.json").read_text()), dtype=float)
XOR_T = np.array(json.loads((ROOT / "examples" / "xor-targets.json").read_text()), dtype=float)
MODES = [{}, {"loss": "mse"}, {"loss": "bce", "per_example": True}, {"loss": "softmax_ce", "reduction": "sum"}]


@pytest.fixture(scope="module")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the example client, its node_modules and the protos `edgegrad protos` writes."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH (the Node.js client example needs them)")
    folder = tmp_path_factory.mktemp("node-client")
    for name in ("package.json", "client.js"):
        shutil.copy(EXAMPLE / name, folder / name)
    npm = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder,
                         capture_output=True, text=True, timeout=600)
    if npm.returncode != 0:
        pytest.skip(f"npm install failed (is the npm registry reachable?): {npm.stderr.strip()[-300:]}")
    subprocess.run([sys.executable, "-m", "edgegrad", "protos", str(folder / "protos")], check=True,
                   capture_output=True)
    (folder / "net.json").write_text(json.dumps(NET.to_dict()))
    (folder / "x.json").write_text(json.dumps(X.tolist()))
    (folder / "t.json").write_text(json.dumps(T.tolist()))
    return folder


def _node(folder: Path, address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", "client.js", "--server", address, "--protos", "protos", *args], cwd=folder,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(f"{k}={v}" for k, v in m.items()) or "output")
def test_node_client_equals_in_process_gradients_bit_for_bit(node_client: Path, cluster, mode: dict) -> None:
    xor = mode.get("loss") == "bce"
    net, x, t = (XOR, XOR_X, XOR_T) if xor else (NET, X, T)
    examples = ROOT / "examples"
    args = (["--network", str(examples / "xor.json"), "--inputs", str(examples / "xor-inputs.json")] if xor
            else ["--network", "net.json", "--inputs", "x.json"])
    if "loss" in mode:
        args += ["--targets", str(examples / "xor-targets.json") if xor else "t.json", "--loss", mode["loss"],
                 "--reduction", mode.get("reduction", "mean")]
    if mode.get("per_example"):
        args.append("--per-example")
    run = _node(node_client, cluster.address, *args)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    want = served(net, x, t if "loss" in mode else None, settings=cluster.settings, **mode)
    assert got["job"].startswith("jobs/")
    assert got["loss"] == want.loss
    for field in ("outputs", "edge_grads", "deltas"):
        mine = np.array(got[field], dtype=np.float64)
        assert mine.shape == getattr(want, field).shape == tuple(got["shapes"][field])
        assert np.array_equal(mine, getattr(want, field)), field


def test_node_client_reports_invalid_argument_with_the_servers_message(node_client: Path, cluster) -> None:
    bad = node_client / "bad.json"
    bad.write_text(json.dumps({"inputs": ["a"], "outputs": ["y"], "nodes": [{"id": "y", "activation": "swish"}],
                               "edges": [{"src": "a", "dst": "y", "weight": 1.0}]}))
    run = _node(node_client, cluster.address, "--network", "bad.json", "--inputs", "x.json")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: nodes[0].activation: unknown activation 'swish'")
