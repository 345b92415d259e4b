"""``edgegrad grad --server`` and the README's ``edgegrad batch`` against a real ``edgegrad up`` (embedded Redis, one worker)."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import assert_json_close, served

from edgegrad import Network, gradients
from edgegrad.cli.io import dumps_result

ROOT = Path(__file__).resolve().parents[2]
XOR = str(ROOT / "examples" / "xor.json")
XOR_X = str(ROOT / "examples" / "xor-inputs.json")
XOR_T = str(ROOT / "examples" / "xor-targets.json")
CONTRACT = str(ROOT / "examples" / "contract.json")


def edgegrad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegrad", *args], capture_output=True, text=True, timeout=120)


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``proc`` within ``timeout`` seconds ('' if none)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                return proc.stdout.readline()
            if proc.poll() is not None:
                return ""
    return ""


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("edgegrad-up")
    # its own embedded Redis, whatever REDIS_URL says: nothing of this test lands in a shared Redis
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("EDGEGRAD_")}
    proc = subprocess.Popen([sys.executable, "-m", "edgegrad", "up", "--port", "0", "--workers", "1",
                             "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _first_line(proc, 90)
        m = re.search(r"listening on (\S+:\d+)", line)
        if m is None:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"edgegrad up did not start: {line!r} {err[-2000:]!r}")
        yield m.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("args, options", [
    ([CONTRACT, "--inputs", XOR_X], {}),
    ([XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse"], {"loss": "mse"}),
    ([XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "bce", "--reduction", "sum", "--per-example"],
     {"loss": "bce", "reduction": "sum", "per_example": True}),
])
def test_service_result_equals_in_process(address, args, options):
    local = edgegrad("grad", *args)
    remote = edgegrad("grad", *args, "--server", address)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    assert remote.stderr == ""
    # bit for bit what the service computes in process (these small jobs: the population engine), and the
    # local CLI's numbers (the single-network engine) to 1e-12
    net = Network.load(args[0])
    x = np.array(json.loads(Path(XOR_X).read_text()), dtype=np.float64)
    t = np.array(json.loads(Path(XOR_T).read_text()), dtype=np.float64) if "loss" in options else None
    assert json.loads(remote.stdout) == json.loads(dumps_result(net, served(net, x, t, **options)))
    assert_json_close(json.loads(remote.stdout), json.loads(local.stdout))


def test_service_bad_input_same_message(address, tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("[[2], [0], [1], [0]]")
    args = ["grad", XOR, "--inputs", XOR_X, "--targets", str(bad), "--loss", "bce"]
    local, remote = edgegrad(*args), edgegrad(*args, "--server", address)
    for proc in (local, remote):
        assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert remote.stderr == local.stderr
    assert local.stderr.startswith("error: targets[0][0]: bce needs targets in [0, 1]")


def test_the_readme_batch_example_runs_after_edgegrad_up(address, tmp_path):
    """The README's `edgegrad batch` block, run as written (its `edgegrad up` is this module's service)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Batch jobs through the service.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [line for line in block.splitlines()
             if not line.startswith(("edgegrad up", "export EDGEGRAD_SERVER"))]
    assert sum(line.startswith("edgegrad batch") for line in lines) == 2
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEGRAD_")}
    env.update(EDGEGRAD_SERVER=address, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("succeeded, 20,000 rows") == 2, proc.stderr
    x, t = np.load(tmp_path / "X.npy"), np.load(tmp_path / "T.npy")
    with np.load(tmp_path / "grads.npz") as r:
        np.testing.assert_allclose(r["edge_grads"], gradients(Network.load(XOR), x, targets=t, loss="mse").edge_grads,
                                   rtol=1e-12)
    assert np.load(tmp_path / "grads" / "edge_grads.npy", mmap_mode="r").shape == (20000, 6)
    assert re.search(r"^jobs/\S+\s+succeeded\s+20,000\s", proc.stdout, re.M), proc.stdout
