"""Memory benchmark: one large gradients call vs a user's own loop over fixed-size slabs, each in a fresh process.

    python -m benchmarks.memory                          # 200k rows, mse, ~10k-edge DAG; per-example 20k rows
    python -m benchmarks.memory --rows 50000 --repeat 1  # quicker

Each case runs in its own subprocess (so its peak RSS, from ``resource.getrusage``, is its own);
cases alternate round by round so both see the same machine load. Every child saves its result and
the parent checks the two agree (1e-12 relative), so the figures compare equal work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

if __package__ in (None, ""):                         # run as a script: python benchmarks/memory.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

import edgegrad
from edgegrad.engine.api import working_memory_bytes
from edgegrad.engine.memory import engine_bytes_per_row, slab_budget

from . import networks

__all__ = ["main"]

GiB = 1024 ** 3
CASES = ("one_call", "user_loop")


def _rss_bytes() -> int:
    """Peak resident set of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(case: str, rows: int, slab: int, per_example: bool, seed: int, out: str) -> None:
    """Run one case and print {"seconds", "peak_rss", "rss_before"} as JSON; save the result to ``out``."""
    net = networks.medium_dag(seed)
    X, T = networks.batch(net, rows, seed)
    edgegrad.gradients(net, X[:8], targets=T[:8], loss="mse", per_example=per_example)   # compile the plan
    before = _rss_bytes()
    start = time.perf_counter()
    if case == "one_call":
        res = edgegrad.gradients(net, X, targets=T, loss="mse", per_example=per_example)
        grads, loss = res.edge_grads, res.loss
    else:  # what a user writes: sums over fixed slabs, the mean taken at the end
        scale = 1.0 / (rows * net.n_outputs)
        loss = 0.0
        grads = np.empty((rows, net.n_edges)) if per_example else np.zeros(net.n_edges)
        for a in range(0, rows, slab):
            b = min(a + slab, rows)
            part = edgegrad.gradients(net, X[a:b], targets=T[a:b], loss="mse", reduction="sum",
                                      per_example=per_example)
            loss += part.loss * scale
            if per_example:
                grads[a:b] = part.edge_grads * scale
            else:
                grads += part.edge_grads
        if not per_example:
            grads *= scale
    seconds = time.perf_counter() - start
    peak = _rss_bytes()
    np.save(out, grads)
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "rss_before": before, "loss": loss}), flush=True)


def _spawn(case: str, args: argparse.Namespace, rows: int, per_example: bool, out: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", case, "--rows", str(rows), "--slab", str(args.slab),
           "--seed", str(args.seed), "--out", out] + (["--per-example"] if per_example else [])
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"{case} child failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare(rows: int, per_example: bool, args: argparse.Namespace) -> None:
    net = networks.medium_dag(args.seed)
    mode = "per-example" if per_example else "loss mode (summed)"
    estimate = working_memory_bytes(net.n_inputs, net.n_nodes, net.n_edges, net.n_outputs, rows, "mse",
                                    per_example, "float64")
    unslabbed = estimate + rows * engine_bytes_per_row(net.n_inputs, net.n_nodes, net.n_outputs, "mse", per_example)
    print(f"\n{mode}, mse, B={rows:,}: {net.n_nodes:,} nodes, {net.n_edges:,} edges; inputs "
          f"{rows * net.n_inputs * 8 / GiB:.2f} GiB; engine estimate {estimate / GiB:.2f} GiB with slabs of "
          f"{slab_budget() / 2**20:.0f} MiB (without slabs it would be {unslabbed / GiB:.1f} GiB)", flush=True)
    runs: dict[str, list[dict]] = {c: [] for c in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for case in (CASES if i % 2 == 0 else CASES[::-1]):
                runs[case].append(_spawn(case, args, rows, per_example, os.path.join(tmp, f"{case}.npy")))
        a, b = (np.load(os.path.join(tmp, f"{c}.npy")) for c in CASES)
        diff = float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0))
    print(f"  {'case':<34} {'time med':>9} {'time min':>9} {'peak RSS':>9} {'RSS before':>10}")
    for case, label in zip(CASES, ("edgegrad.gradients, one call", f"user loop over {args.slab}-row slabs")):
        times = [r["seconds"] for r in runs[case]]
        peak = max(r["peak_rss"] for r in runs[case])
        before = max(r["rss_before"] for r in runs[case])
        print(f"  {label:<34} {np.median(times):>8.2f}s {min(times):>8.2f}s {peak / GiB:>8.2f}G {before / GiB:>9.2f}G")
    ratio = float(np.median([o["seconds"] / u["seconds"] for o, u in zip(runs["one_call"], runs["user_loop"])]))
    peak = max(r["peak_rss"] for r in runs["one_call"])
    print(f"  one call / user loop time (paired median of {args.repeat}): {ratio:.2f}×  "
          f"(goal ≤ 1.0: {'ok' if ratio <= 1.0 else 'MISSED'}); peak RSS {peak / GiB:.2f} GiB "
          f"(goal ≤ 2 GiB: {'ok' if peak <= 2 * GiB else 'MISSED'}); results agree to {diff:.1e}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison (or, with --child, one case)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="loss-mode batch rows (default 200000)")
    p.add_argument("--per-example-rows", type=int, default=20_000, help="per-example batch rows (0 skips; default 20000)")
    p.add_argument("--slab", type=int, default=8192, help="the user loop's slab rows (default 8192)")
    p.add_argument("--repeat", type=int, default=3, help="paired rounds (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--per-example", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.rows, args.slab, args.per_example, args.seed, args.out)
        return 0
    print(f"edgegrad memory benchmark: {os.cpu_count()} CPUs, EDGEGRAD_THREADS="
          f"{os.environ.get('EDGEGRAD_THREADS', 'unset')}, load average {os.getloadavg()[0]:.2f}")
    _compare(args.rows, False, args)
    if args.per_example_rows > 0:
        _compare(args.per_example_rows, True, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
