"""Per-example norms and clipped gradients (``clip_norm``) beside their baselines, each measured in the same run.

    python -m benchmarks.clip [--rounds 5] [--only dag,medium,mlp,big]

- dag: the 960k-edge irregular DAG, B=256: ``clip_norm`` against edgegrad's own plain loss-mode call;
- medium: the ~10k-edge DAG, B=256: against torch.func ``vmap(grad)`` per-example gradients then clipping;
- mlp: the dense MLP 256-1024-1024-256-16 (tanh), B=256: against Opacus ghost clipping on an ``nn.Sequential``;
- big: 200,000 rows on the ~10k-edge DAG: peak RSS and time of ``clip_norm`` against the plain loss-mode call,
  each in its own process.

float64 everywhere, mse with mean reduction, C = the median of the batch's per-example norms (about half the
examples clipped). Times are the best of ``--rounds`` after a warm-up call (compiles excluded); peers run in
child processes, timed in rounds alternating with edgegrad (``timing.paired``). Peer results are checked
against edgegrad's before timing (torch.func to 1e-9; Opacus adds 1e-6 to each norm, so to 1e-5).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

import edgegrad

from . import networks
from .timing import PeerChild, fmt_bytes, fmt_time, measure, paired

SPECS = {"dag": {"generator": "irregular_dag"}, "medium": {"generator": "medium_dag"}, "mlp": {"generator": "mlp"}}


def _clip_norm(net: edgegrad.Network, X: np.ndarray, T: np.ndarray) -> float:
    return float(np.median(edgegrad.gradients(net, X, targets=T, loss="mse", norms=True).norms))


def _setup(key: str, rows: int) -> tuple[edgegrad.Network, np.ndarray, np.ndarray, float]:
    net = networks.build(SPECS[key])
    X, T = networks.batch(net, rows)
    return net, X, T, _clip_norm(net, X, T)


def _against_plain(key: str, rounds: int) -> None:
    net, X, T, C = _setup(key, 256)
    clip = lambda: edgegrad.gradients(net, X, targets=T, loss="mse", clip_norm=C)  # noqa: E731
    plain = lambda: edgegrad.gradients(net, X, targets=T, loss="mse")  # noqa: E731
    mine, base = paired(clip, plain, rounds)
    print(f"  {net.n_edges:>9,} edges B=256  clip_norm {fmt_time(min(mine)):>9}  plain loss mode {fmt_time(min(base)):>9}"
          f"  clip ÷ plain {min(mine) / min(base):.2f}×", flush=True)


def _against_peer(key: str, mode: str, rounds: int) -> None:
    net, X, T, C = _setup(key, 256)
    ours = edgegrad.gradients(net, X, targets=T, loss="mse", clip_norm=C)
    spec = {**SPECS[key], "clip_norm": C}
    with PeerChild(spec, 256, 0, mode=mode, module="benchmarks.clip_peers") as child:
        theirs = child.edge_grads()
        err = float(np.max(np.abs(theirs - ours.edge_grads)) / np.max(np.abs(ours.edge_grads)))
        tol = 1e-9 if mode == "func" else 1e-5
        check = f"agree to {err:.1e}" if err <= tol else f"DISAGREE ({err:.1e} > {tol:g})"
        mine, peer = paired(lambda: edgegrad.gradients(net, X, targets=T, loss="mse", clip_norm=C), child.run, rounds)
    plain = min(measure(lambda: edgegrad.gradients(net, X, targets=T, loss="mse"), rounds))
    print(f"  {net.n_edges:>9,} edges B=256  clip_norm {fmt_time(min(mine)):>9}  {child.info['kind']} "
          f"{fmt_time(min(peer)):>9}  peer ÷ edgegrad {min(peer) / min(mine):.1f}×  ({check}; edgegrad's plain"
          f" loss mode {fmt_time(plain)})", flush=True)


def _child_run(kind: str, rows: int) -> None:
    """In a fresh process: one call on ``rows`` rows of the ~10k-edge DAG; prints seconds and peak RSS."""
    net = networks.build(SPECS["medium"])
    X, T = networks.batch(net, rows)
    C = 1.0
    edgegrad.gradients(net, X[:256], targets=T[:256], loss="mse", clip_norm=C)   # compile and warm up
    start = time.perf_counter()
    if kind == "clip":
        edgegrad.gradients(net, X, targets=T, loss="mse", clip_norm=C)
    else:
        edgegrad.gradients(net, X, targets=T, loss="mse")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _big(rounds: int, rows: int = 200_000) -> None:
    results: dict[str, list[dict]] = {"clip": [], "plain": []}
    for i in range(rounds):
        for kind in (("clip", "plain") if i % 2 == 0 else ("plain", "clip")):
            out = subprocess.run([sys.executable, "-m", "benchmarks.clip", "--child", kind, "--rows", str(rows)],
                                 capture_output=True, text=True, check=True)
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    clip_t = min(r["seconds"] for r in results["clip"])
    plain_t = min(r["seconds"] for r in results["plain"])
    rss = max(r["rss"] for r in results["clip"])
    print(f"  {rows:,} rows × 10k edges  clip_norm {fmt_time(clip_t):>9} (peak RSS {fmt_bytes(rss)})"
          f"  plain loss mode {fmt_time(plain_t):>9} (peak RSS {fmt_bytes(max(r['rss'] for r in results['plain']))})"
          f"  clip ÷ plain {clip_t / plain_t:.2f}×  (a B×E array would be {fmt_bytes(rows * 10_240 * 8)})", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.clip", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", default="dag,medium,mlp,big")
    p.add_argument("--child", choices=("clip", "plain"), help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=200_000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child_run(args.child, args.rows)
        return 0
    only = set(args.only.split(","))
    print(f"clip_norm (best of {args.rounds}; float64, mse mean, C = median per-example norm)", flush=True)
    if "dag" in only:
        _against_plain("dag", args.rounds)
    if "medium" in only:
        _against_peer("medium", "func", args.rounds)
    if "mlp" in only:
        _against_peer("mlp", "ghost", args.rounds)
    if "big" in only:
        _big(min(args.rounds, 3), args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
