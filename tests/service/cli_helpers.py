"""Running the real ``edgegrad`` command against a test server: finished runs and interruptible ones."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import edgegrad
from edgegrad import Network

ROOT = Path(__file__).resolve().parents[2]
XOR_PATH = str(ROOT / "examples" / "xor.json")
XOR = Network.load(XOR_PATH)
NAME = re.compile(r"\b(jobs/[0-9A-Za-z_-]+)")


def env(**extra: str) -> dict[str, str]:
    """The environment for a CLI run: no stray EDGEGRAD_* settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEGRAD_")}
    return {**base, **extra}


def edgegrad_cli(*args: str, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m edgegrad ARGS`` to the end, output captured."""
    return subprocess.run([sys.executable, "-m", "edgegrad", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(**extra_env))


def start_cli(*args: str, **extra_env: str) -> subprocess.Popen:
    """``python -m edgegrad ARGS`` in the background (to be interrupted)."""
    return subprocess.Popen([sys.executable, "-m", "edgegrad", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(**extra_env))


def wait_for_stderr(proc: subprocess.Popen, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
    """Read ``proc``'s stderr line by line until ``pattern`` matches (fails the test otherwise)."""
    deadline = time.monotonic() + timeout
    seen = []
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    break
                seen.append(line)
                m = pattern.search(line)
                if m is not None:
                    return m
            elif proc.poll() is not None:
                break
    proc.kill()
    raise AssertionError(f"no {pattern.pattern!r} on stderr: {''.join(seen)!r}")


def interrupt(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """SIGINT (Ctrl-C), then the exit status and the rest of stdout and stderr."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def xor_batch(tmp: Path, rows: int, seed: int = 0) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Inputs and 0/1 targets for examples/xor.json saved as .npy: (x path, t path, x, t)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    t = (x[:, :1] * x[:, 1:] > 0).astype(float)
    xp, tp = tmp / f"x{seed}.npy", tmp / f"t{seed}.npy"
    np.save(xp, x)
    np.save(tp, t)
    return str(xp), str(tp), x, t


def load_result(out: Path) -> dict[str, np.ndarray]:
    """Every array of a result written by the CLI (an .npz, or a folder of .npy read memory-mapped)."""
    if out.suffix == ".npz":
        with np.load(out) as z:
            return {k: z[k] for k in z.files}
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted(out.glob("*.npy"))}


def assert_matches_in_process(arrays: dict[str, np.ndarray], net: Network, x, labels: bool = True,
                              **options) -> None:
    """The written result equals ``edgegrad.gradients`` in-process (1e-12; loss summed over shards)."""
    res = edgegrad.gradients(net, x, **options)
    np.testing.assert_allclose(arrays["outputs"], res.outputs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(arrays["edge_grads"], res.edge_grads, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(arrays["deltas"], res.deltas, rtol=1e-12, atol=1e-300)
    if res.loss is None:
        assert "loss" not in arrays
    else:
        np.testing.assert_allclose(float(arrays["loss"]), res.loss, rtol=1e-12)
    if labels:
        assert arrays["edges"].tolist() == net.edge_pairs() and arrays["nodes"].tolist() == list(net.node_ids)
