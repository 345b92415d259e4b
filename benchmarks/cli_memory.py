"""Peak memory of ``edgegrad batch`` against ``edgegrad grad --server`` for one result of ~100 MiB.

    python -m benchmarks.cli_memory              # ~30 s: a 2-64-64-1 MLP, 3,000 rows, output mode
    python -m benchmarks.cli_memory --rows 6000  # twice the result: batch's line should not move

A local cluster (one server, one worker; Redis at REDIS_URL or 127.0.0.1:6379, in a namespace of
its own, deleted at the end). Each command runs as a real process; its peak anonymous memory
(RssAnon, polled every 5 ms: what the process holds itself, not the page cache of the files it
writes) is printed beside the size of the result, and the files are checked against in-process.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):                         # run as a script: python benchmarks/cli_memory.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

import edgegrad
from edgegrad.jobs.namespace import delete_namespace
from edgegrad.server.cluster import Cluster
from edgegrad.settings import Settings

from . import networks


def peak_anon_mib(args: Sequence[str]) -> tuple[int, float, str]:
    """Run ``edgegrad ARGS``; (exit status, peak RssAnon in MiB, last stderr line)."""
    proc = subprocess.Popen([sys.executable, "-m", "edgegrad", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.005)
    err = proc.stderr.read().strip().splitlines()
    return proc.returncode, peak / 1024, err[-1] if err else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Print one line per command: peak memory beside the result size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="batch rows (default 3000)")
    args = parser.parse_args(argv)
    token = f"egbench-climem-{secrets.token_hex(4)}"
    settings = Settings.from_env(redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                 key_prefix=token, queue=token)
    net = networks.mlp(sizes=(2, 64, 64, 1))
    x = np.random.default_rng(0).random((args.rows, 2))
    expected = edgegrad.gradients(net, x)
    result_mib = (expected.outputs.nbytes + expected.edge_grads.nbytes + expected.deltas.nbytes) / 2**20
    try:
        with tempfile.TemporaryDirectory() as tmp, Cluster(settings, workers=1) as cluster:
            cluster.wait_for_workers()
            net_path, x_path = str(Path(tmp, "net.npz")), str(Path(tmp, "x.npy"))
            net.save(net_path)
            np.save(x_path, x)
            print(f"{args.rows:,} rows, {net.n_edges:,} edges, output mode: result {result_mib:.0f} MiB")
            for command, out in (("batch", "r.npz"), ("batch", "r"), ("grad", "g.npz")):
                path = str(Path(tmp, out))
                status, mib, last = peak_anon_mib([command, net_path, "--inputs", x_path, "--out", path,
                                                   "--server", cluster.address])
                if status != 0:
                    print(f"  {command} --out {out}: exit {status}: {last}")
                    return 1
                with np.load(path) if out.endswith(".npz") else _Folder(path) as got:
                    same = np.array_equal(got["edge_grads"], expected.edge_grads)
                print(f"  edgegrad {command:<5} --out {out:<6} peak RssAnon {mib:6.0f} MiB   equal to in-process: {same}")
    finally:
        delete_namespace(settings)
    return 0


class _Folder:
    """A folder of .npy files read like an open .npz."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __getitem__(self, name: str) -> np.ndarray:
        return np.load(os.path.join(self.path, f"{name}.npy"), mmap_mode="r")


if __name__ == "__main__":
    sys.exit(main())
