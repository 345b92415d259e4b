"""``engine.py --peers``: one row per workload — edgegrad, PyTorch, JAX, numpy, the ratios and a floor estimate.

Each peer runs in a child process (``timing.PeerChild``) and is timed in rounds alternating with
edgegrad (``timing.paired``), so a ratio compares runs under the same machine load; the ratio is
the median over rounds of peer ÷ edgegrad (higher is better for edgegrad). The floor estimate is
measured in the same run: the memory passes no implementation can avoid, timed with numpy on
buffers of the workload's sizes (see ``_floor``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import edgegrad

from . import jax_baseline, networks, torch_baseline
from .numpy_baseline import mlp_grads, targets_in_rows
from .timing import PeerChild, fmt_time, measure, paired

__all__ = ["WORKLOADS", "run_peers"]


class Workload(NamedTuple):
    """One benchmark row: a network, a batch and the call's mode."""

    key: str
    label: str
    spec: dict
    batch: int
    mode: str                       #: loss | per_example | output


WORKLOADS = (
    Workload("dag", "irregular DAG, 960k edges, B=256, mse", {"generator": "irregular_dag"}, 256, "loss"),
    Workload("per_example", "per-example B×E, 10k edges, B=1024", {"generator": "medium_dag"}, 1024, "per_example"),
    Workload("output", "output mode B×K×E, K=16, 96k edges, B=32", {"generator": "irregular_dag", "width": 600},
             32, "output"),
    Workload("mlp", "dense MLP 256-1024-1024-256-16, B=256, mse", {"generator": "mlp"}, 256, "loss"),
    Workload("deep", "deep narrow DAG 1500 levels × 8, B=64, mse", {"generator": "deep_narrow_dag"}, 64, "loss"),
    Workload("b1", "fixed cost: B=1 on the 960k-edge DAG, mse", {"generator": "irregular_dag"}, 1, "loss"),
)


def _call(net: edgegrad.Network, w: Workload, X: np.ndarray, T: np.ndarray) -> Callable[[], object]:
    if w.mode == "output":
        return lambda: edgegrad.gradients(net, X)
    return lambda: edgegrad.gradients(net, X, targets=T, loss="mse", per_example=w.mode == "per_example")


def _timed(fn: Callable[[], object], repeat: int = 3) -> float:
    fn()
    return float(min(measure(fn, repeat, 0)))


def _floor(net: edgegrad.Network, w: Workload) -> tuple[float, str]:
    """Seconds of the unavoidable memory passes, measured now, and what they are.

    loss: 3 gathers of the edges' source rows (forward product, backward product, gradient);
    per-example: those + writing the B×E result once; output: 1 gather of B columns + 2 of K·B
    + writing B×K×E; the deep DAG: 2 small BLAS calls per level (its per-level floor).
    """
    rng = np.random.default_rng(0)
    vertices, k = net.n_inputs + net.n_nodes, net.n_outputs
    if w.key == "deep":
        levels = int(np.max(net.levels))
        W, o = rng.standard_normal((8, 16)), rng.standard_normal((16, w.batch))
        one = _timed(lambda: [W @ o for _ in range(100)]) / 100
        return 2 * levels * one, f"2 BLAS calls × {levels} levels"
    if w.key == "mlp":
        layers = networks.dense_layers(net)
        X, T = networks.batch(net, w.batch)
        rows = targets_in_rows(layers, net.output_index, T)
        return _timed(lambda: mlp_grads(layers, X, rows)), "numpy BLAS forward + backward"

    def gather(width: int) -> float:
        """Reading every edge's source row once, in sorted order, into a cache-sized buffer."""
        src = np.sort(rng.integers(0, vertices, net.n_edges))
        acts = rng.standard_normal((vertices, width))
        out = np.empty((max(1, min(net.n_edges, (1 << 20) // (8 * width))), width))
        step = out.shape[0]
        return _timed(lambda: [np.take(acts, src[a:a + step], axis=0, out=out[:min(step, src.size - a)])
                               for a in range(0, src.size, step)])

    if w.mode == "loss":
        return 3 * gather(w.batch), "3 sorted gathers of E source rows"
    cells = w.batch * net.n_edges * (k if w.mode == "output" else 1)
    result = np.empty(cells)
    write = _timed(lambda: result.fill(1.0))
    if w.mode == "per_example":
        return 3 * gather(w.batch) + write, f"3 gathers + writing {cells * 8 / 2**30:.2f} GiB"
    return gather(w.batch) + 2 * gather(w.batch * k) + write, f"gathers + writing {cells * 8 / 2**30:.2f} GiB"


def _peer(w: Workload, module: str, ours: Callable[[], object], rounds: int) -> tuple[list[float], list[float], str]:
    try:
        with PeerChild(w.spec, w.batch, 0, mode=w.mode, module=module) as child:
            mine, theirs = paired(ours, child.run, rounds, 0)
            return mine, theirs, str(child.info.get("kind", ""))
    except (RuntimeError, OSError) as exc:
        return [], [], f"failed: {exc}"


def _fmt_ratio(mine: list[float], theirs: list[float]) -> str:
    return f"{float(np.median(np.divide(theirs, mine))):.2f}×" if mine else "–"


def run_peers(args: argparse.Namespace) -> None:
    """Print the peer table for the chosen workloads."""
    chosen = [w for w in WORKLOADS if w.key in args.workloads]
    print(f"\npeers: median seconds; ratio = peer ÷ edgegrad, median over {args.peer_rounds} paired rounds "
          f"(higher is better for edgegrad)")
    print(f"  {'workload':<46} {'edgegrad':>9} {'PyTorch':>9} {'JAX':>9} {'numpy':>9} {'÷torch':>7} {'÷JAX':>7}"
          f" {'floor':>9}  notes", flush=True)
    for w in chosen:
        net = networks.build(w.spec)
        X, T = networks.batch(net, w.batch)
        ours = _call(net, w, X, T)
        ours()
        notes = []
        results = {}
        for name, module, ok in (("torch", "benchmarks.torch_baseline", torch_baseline.available()),
                                 ("jax", "benchmarks.jax_baseline", jax_baseline.available())):
            if name == "jax" and w.key == "deep":   # measured: jit of 1,500 unrolled levels compiles > 10 min here
                results[name] = ([], [])
                notes.append("jax: skipped (jit of 1,500 unrolled levels did not compile within 10 min on 2 cores)")
                continue
            if not ok or getattr(args, f"no_{name}", False):
                results[name] = ([], [])
                continue
            mine, theirs, kind = _peer(w, module, ours, args.peer_rounds)
            results[name] = (mine, theirs)
            notes.append(f"{name}: {kind}")
        numpy_time = "–"
        if w.key == "mlp":
            layers = networks.dense_layers(net)
            rows = targets_in_rows(layers, net.output_index, T)
            mine, theirs = paired(ours, lambda layers=layers, X=X, rows=rows: mlp_grads(layers, X, rows),
                                  args.peer_rounds, 0)
            results["numpy"] = (mine, theirs)
            numpy_time = fmt_time(float(np.median(theirs)))
            notes.append(f"numpy ÷ edgegrad {_fmt_ratio(mine, theirs)}")
        floor, what = _floor(net, w)
        notes.append(f"floor: {what}")
        ours_all = [t for mine, _ in results.values() for t in mine] or measure(ours, args.peer_rounds, 0)
        peer_time = {n: fmt_time(float(np.median(results[n][1]))) if results[n][1] else "–" for n in ("torch", "jax")}
        print(f"  {w.label:<46} {fmt_time(float(np.median(ours_all))):>9} {peer_time['torch']:>9} {peer_time['jax']:>9}"
              f" {numpy_time:>9} {_fmt_ratio(*results['torch']):>7} {_fmt_ratio(*results['jax']):>7}"
              f" {fmt_time(floor):>9}  {'; '.join(notes)}", flush=True)
        del net
        time.sleep(0.1)
