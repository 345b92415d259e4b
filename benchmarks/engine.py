"""Engine benchmark: plan build, per-call time, float32, peak memory and baselines, printed as a table.

    python -m benchmarks.engine                 # the full benchmark (two to three minutes on 2 cores)
    python -m benchmarks.engine --quick         # smaller networks, fewer runs
    python -m benchmarks.engine --check         # gradients vs PyTorch autograd (1e-9 relative, float64)
    python -m benchmarks.engine --peers         # only the table: edgegrad, PyTorch, JAX, numpy, ratios, floor

PyTorch (CPU) and JAX baselines run when importable (``pip install '.[bench]'``), else are skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):                         # run as a script: python benchmarks/engine.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

import edgegrad
from edgegrad import Network
from edgegrad.engine.plan import clear_plan_cache, get_plan

from . import networks, torch_baseline
from .numpy_baseline import mlp_grads, scatter_to_edges, targets_in_rows
from .peers import run_peers
from .timing import MiB, TorchChild, fmt_bytes, fmt_time, measure, paired, peak_bytes

__all__ = ["main", "bench_network", "run_check"]


class Table:
    """Rows printed as they come: what, median, min, runs, note."""

    def __init__(self) -> None:
        print(f"  {'what':<52} {'median':>10} {'min':>10} {'runs':>5}  note", flush=True)

    def row(self, what: str, times: Sequence[float] | str | None = None, note: str = "") -> None:
        """One line; ``times`` is a list of seconds, a ready string, or None."""
        if isinstance(times, str) or times is None:
            median, low, runs = times or "", "", ""
        else:
            median, low, runs = fmt_time(float(np.median(times))), fmt_time(min(times)), str(len(times))
        print(f"  {what:<52} {median:>10} {low:>10} {runs:>5}  {note}".rstrip(), flush=True)


def _verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def _default_size(args: argparse.Namespace) -> bool:
    """True when the networks have the sizes the issue's targets are stated for."""
    return (args.batch, args.levels, args.width, args.fan_in, args.mlp) == (256, 16, 6000, 10, list(networks.MLP_SIZES))


def _describe(label: str, net: Network) -> None:
    levels = int(np.max(net.levels))
    print(f"\n{label}: {net.n_inputs:,} inputs, {net.n_nodes:,} nodes, {net.n_edges:,} edges, "
          f"{net.n_outputs} outputs, {levels} levels", flush=True)


def _rel_diff(a: np.ndarray | float, b: np.ndarray | float) -> float:
    b = np.asarray(b, dtype=np.float64)
    scale = float(np.max(np.abs(b))) or 1.0
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - b))) / scale


def bench_network(label: str, spec: dict, args: argparse.Namespace, kind: str) -> None:
    """All measurements for one network; ``kind`` is 'dag', 'mlp' or 'tiny' (which baselines apply)."""
    start = time.perf_counter()
    net = networks.build(spec)
    generated = time.perf_counter() - start
    _describe(label, net)
    table = Table()
    table.row("generate (numpy + Network.from_arrays)", [generated])
    X, T = networks.batch(net, args.batch, args.seed)
    call = lambda dtype="float64": edgegrad.gradients(net, X, targets=T, loss="mse", dtype=dtype)  # noqa: E731

    clear_plan_cache()
    start = time.perf_counter()
    get_plan(net)
    build_time = time.perf_counter() - start
    table.row("plan build, first call (hash + compile)", [build_time],
              f"target ≤ 1.5 s: {_verdict(build_time, 1.5)}" if kind == "dag" and _default_size(args) else "")
    table.row("plan build, cached", measure(lambda: get_plan(net), 100, 0))
    clear_plan_cache()
    table.row(f"first gradients call (plan + compute), B={args.batch}", measure(call, 1, 0))

    repeat = args.repeat if kind != "tiny" else 200
    f64 = measure(call, repeat, args.warmup)
    med64 = float(np.median(f64))
    note = {"dag": f"target ≤ 1.0 s: {_verdict(med64, 1.0)}",
            "mlp": f"target ≤ ~0.1 s: {_verdict(med64, 0.1)}"}.get(kind, "") if _default_size(args) else ""
    table.row(f"gradients float64, B={args.batch}, mse", f64, note)
    get_plan(net, "float32")
    f32 = measure(lambda: call("float32"), repeat, args.warmup)
    result = call()
    single = call("float32")
    table.row(f"gradients float32, B={args.batch}, mse", f32,
              f"max rel diff from float64: edge_grads {_rel_diff(single.edge_grads, result.edge_grads):.1e}, "
              f"loss {_rel_diff(single.loss, result.loss):.1e}")

    peak = peak_bytes(call)
    acts = args.batch * net.n_nodes * 8
    arrays = sum(a.nbytes for a in (net.src, net.dst, net.weights, net.biases))
    ratio = peak / (acts + arrays)
    table.row("peak memory in one float64 call (tracemalloc)", fmt_bytes(peak),
              f"{ratio:.1f}× of B×N activations {fmt_bytes(acts)} + network arrays {fmt_bytes(arrays)}"
              + (f"; target ≤ ~3×: {_verdict(ratio, 3.2)}" if acts + arrays >= 8 * MiB else ""))
    if args.phases and kind != "tiny":
        _phases(table, net, X, T, args)
    if kind == "tiny":
        return
    _baselines(table, net, spec, X, T, args, kind, result)


def _phases(table: Table, net: Network, X: np.ndarray, T: np.ndarray, args: argparse.Namespace) -> None:
    try:
        from .phases import time_phases

        phases = time_phases(net, X, T, repeat=max(3, args.repeat // 2))
    except Exception as exc:  # the engine's internals moved: say so, keep benchmarking
        table.row("phase breakdown", "n/a", f"{type(exc).__name__}: {exc}")
        return
    total = sum(phases.values())
    for name, seconds in phases.items():
        table.row(f"  phase: {name}", fmt_time(seconds), f"{100 * seconds / total:.0f}% of {fmt_time(total)}")


def _baselines(table: Table, net: Network, spec: dict, X: np.ndarray, T: np.ndarray, args: argparse.Namespace,
               kind: str, result: edgegrad.GradientResult) -> None:
    """Baseline rows, each timed in rounds alternating with edgegrad so both see the same load."""
    ours = lambda: edgegrad.gradients(net, X, targets=T, loss="mse")  # noqa: E731
    if kind == "mlp":
        layers = networks.dense_layers(net)
        T_rows = targets_in_rows(layers, net.output_index, T)
        blas = lambda: mlp_grads(layers, X, T_rows)  # noqa: E731
        mine, theirs = paired(ours, blas, args.repeat, args.warmup)
        table.row("numpy BLAS layers (forward + backward)", theirs, _ratio(mine, theirs, "numpy"))
        full = lambda: scatter_to_edges(layers, blas()[1], net.n_edges, net.n_nodes)  # noqa: E731
        mine, theirs = paired(ours, full, args.repeat, args.warmup)
        table.row("numpy BLAS layers + scatter to edge order", theirs,
                  f"{_ratio(mine, theirs, 'numpy')}; max rel diff {_rel_diff(result.edge_grads, full()[0]):.1e}")
    if args.no_torch or not torch_baseline.available():
        table.row("PyTorch CPU baseline", "skipped",
                  "--no-torch" if args.no_torch else "torch not importable (pip install torch==2.13.0)")
        return
    rounds = args.torch_repeat if kind == "dag" else max(args.repeat, 5)
    try:
        with TorchChild(spec, args.batch, args.seed) as child:
            mine, theirs = paired(ours, child.run, rounds, 0)
            ref_grads = child.edge_grads()
            info = child.info
    except (RuntimeError, OSError) as exc:
        table.row("PyTorch CPU baseline", "failed", str(exc))
        return
    if kind == "dag":
        note = _ratio(mine, theirs, "torch")
    else:
        ratio = float(np.median(np.divide(mine, theirs)))
        note = f"{_ratio(mine, theirs, 'torch')}; target ≤ 2×: {_verdict(ratio, 2.0)}"
    table.row(f"PyTorch {info['kind']}, {info['threads']} thr", theirs,
              f"{note}; max rel diff {_rel_diff(result.edge_grads, ref_grads):.1e}")


def _ratio(mine: list[float], theirs: list[float], name: str) -> str:
    """Median over paired rounds of edgegrad's time over the baseline's, said the readable way round."""
    ratio = float(np.median(np.divide(mine, theirs)))
    said = f"edgegrad / {name} = {ratio:.2f}×" if ratio >= 0.5 else f"edgegrad {1 / ratio:.1f}× faster than {name}"
    return f"{said} (paired, {len(mine)} rounds; edgegrad median {fmt_time(float(np.median(mine)))} in them)"


def run_check(args: argparse.Namespace) -> int:
    """The ``--check`` mode: exit 0 when every comparison is within 1e-9 relative, else 1."""
    if not torch_baseline.available():
        print("error: --check compares with PyTorch autograd: pip install torch==2.13.0", file=sys.stderr)
        return 2
    from .check import TOLERANCE, run_checks

    print(f"edgegrad float64 vs independent autograd (tolerance {TOLERANCE:g}, max|diff| / max|ref|)")
    print(f"  {'case':<58} {'field':<11} {'rel error':>10} {'max|ref|':>10}")

    def report(c) -> None:
        print(f"  {c.case:<58} {c.field:<11} {c.error:>10.1e} {c.scale:>10.2e}  {'ok' if c.ok else 'FAIL'}",
              flush=True)

    results = run_checks(seed=args.seed, report=report)
    failed = [c for c in results if not c.ok]
    print(f"{len(results) - len(failed)}/{len(results)} comparisons within {TOLERANCE:g}")
    return 1 if failed else 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError("expected at least two positive layer sizes")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare gradients with PyTorch autograd and exit")
    p.add_argument("--networks", default="a,b,c", help="which of a (irregular DAG), b (MLP), c (tiny); default a,b,c")
    p.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    p.add_argument("--repeat", type=int, help="timed edgegrad runs per figure (default 5, --quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument("--torch-repeat", type=int, help="timed runs of the irregular-DAG torch baseline (default 3, --quick 2)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX baselines")
    p.add_argument("--peers", action="store_true", help="only the peer table (edgegrad, PyTorch, JAX, numpy, floor)")
    p.add_argument("--workloads", default="dag,per_example,output,mlp,deep,b1",
                   help="peer-table rows: a subset of dag,per_example,output,mlp,deep,b1 (default all)")
    p.add_argument("--peer-rounds", type=int, default=5, help="paired rounds per peer in the table (default 5)")
    p.add_argument("--phases", action="store_true", help="also time the engine's phases one by one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=int, default=16, help="irregular DAG: levels (default 16)")
    p.add_argument("--width", type=int, help="irregular DAG: nodes per level (default 6000, --quick 1500)")
    p.add_argument("--fan-in", type=int, default=10, help="irregular DAG: fan-in (default 10)")
    p.add_argument("--mlp", type=_sizes, help="MLP layer sizes (default 256,1024,1024,256,16, --quick 256,512,512,128,16)")
    p.add_argument("--quick", action="store_true", help="smaller defaults: width 1500, MLP 256,512,512,128,16, 3 runs")
    args = p.parse_args(argv)
    defaults = {"width": (6000, 1500), "mlp": (list(networks.MLP_SIZES), [256, 512, 512, 128, 16]),
                "repeat": (5, 3), "torch_repeat": (3, 2)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    chosen = [s.strip() for s in args.networks.split(",") if s.strip()]
    if not chosen or any(s not in ("a", "b", "c") for s in chosen):
        p.error("--networks takes a comma-separated subset of a,b,c")
    if min(args.batch, args.repeat, args.torch_repeat, args.levels, args.width, args.fan_in) < 1 or args.warmup < 0:
        p.error("sizes and run counts must be positive")
    args.networks = chosen
    args.workloads = [s.strip() for s in args.workloads.split(",") if s.strip()]
    if any(s not in ("dag", "per_example", "output", "mlp", "deep", "b1") for s in args.workloads):
        p.error("--workloads takes a comma-separated subset of dag,per_example,output,mlp,deep,b1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or ``--check``) and print the table."""
    args = parse_args(argv)
    if args.check:
        return run_check(args)
    torch_note = "not installed"
    if args.no_torch:
        torch_note = "skipped (--no-torch)"
    elif torch_baseline.available():
        torch_note = importlib.metadata.version("torch") + " (baselines run in a child process)"
    print(f"edgegrad {edgegrad.__version__} engine benchmark: batch {args.batch}, mse loss (mean), full gradients")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch_note}, "
          f"{os.cpu_count()} CPUs, EDGEGRAD_THREADS={os.environ.get('EDGEGRAD_THREADS', 'unset')}")
    print(f"times: median and min of {args.repeat} runs after {args.warmup} warm-up (tiny: 200 runs); {_load()}")
    if args.peers:
        run_peers(args)
        print(f"\ndone; {_load()}")
        return 0
    if "a" in args.networks:
        bench_network("(a) irregular DAG", {"generator": "irregular_dag", "seed": args.seed, "n_levels": args.levels,
                                            "width": args.width, "fan_in": args.fan_in}, args, "dag")
    if "b" in args.networks:
        bench_network("(b) dense MLP " + "-".join(map(str, args.mlp)) + " as a DAG",
                      {"generator": "mlp", "seed": args.seed, "sizes": args.mlp}, args, "mlp")
    if "c" in args.networks:
        bench_network("(c) tiny network", {"generator": "tiny", "seed": args.seed}, args, "tiny")
    run_peers(args)
    print(f"\ndone; {_load()}")
    return 0


def _load() -> str:
    """The 1-minute load average, to judge how much other work skewed the figures."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    sys.exit(main())
