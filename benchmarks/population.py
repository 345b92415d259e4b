"""Populations in process: ``gradients_many`` vs a Python loop of ``gradients`` and vs a padded JAX population
(``benchmarks.jax_population``, in a child process; skipped where jax is not installed), ``outputs_many`` vs
neat-python's ``FeedForwardNetwork.activate``, and peak RSS of a 100,000-network call.

    python -m benchmarks.population              # P = 100, 1,000, 10,000; padded JAX; a fine-tuning step; neat; RSS
    python -m benchmarks.population --quick      # P = 100, 1,000; best of 2; RSS at P = 20,000
    python -m benchmarks.population --service    # also one population job vs submit_many through the service

NEAT-size networks (4 inputs, 2 outputs, 0–40 hidden nodes, fan-in 1–4, mixed activations; fixed seed),
B = 256, mse with mean reduction, float64, the default kernel setting. Every timed repetition runs on
freshly built networks (neither side helped by a cache); building them (``from_arrays``, neat's
``FeedForwardNetwork.create``) is outside the timed region on both sides. Each figure is printed
beside its baseline from the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import edgegrad  # noqa: E402
from benchmarks.population_nets import NEAT_ACTIVATIONS, neat_size_population, neat_size_rows  # noqa: E402

ROWS = 256


def _best(runs: int, make: Callable[[int], Any], timed: Callable[[Any], Any]) -> tuple[float, Any]:
    """Best wall time of ``timed(make(i))`` over ``runs`` repetitions (``make`` outside the clock); last result."""
    best, result = float("inf"), None
    for i in range(runs):
        data = make(i)
        start = time.perf_counter()
        result = timed(data)
        best = min(best, time.perf_counter() - start)
    return best, result


def _rows(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return neat_size_rows(seed, ROWS)


def bench_gradients(sizes: list[int], runs: int) -> None:
    """gradients_many against a loop of gradients, fresh networks each repetition."""
    X, T = _rows(0)
    edgegrad.gradients_many(neat_size_population(99, 4), X, T, loss="mse")   # numba's load, outside the clock
    edgegrad.gradients(neat_size_population(99, 1)[0], X, T, loss="mse")
    for count in sizes:
        many, got = _best(runs, lambda i, count=count: neat_size_population(1000 * count + i, count),
                          lambda nets: (nets, edgegrad.gradients_many(nets, X, T, loss="mse")))
        loop, want = _best(runs, lambda i, count=count: neat_size_population(1000 * count + i, count),
                           lambda nets: [edgegrad.gradients(n, X, T, loss="mse") for n in nets])
        worst = max(float(np.abs(a.edge_grads - b.edge_grads).max() / max(np.abs(b.edge_grads).max(initial=0), 1e-300))
                    for a, b in zip(got[1], want) if b.edge_grads.size)
        edges = sum(n.n_edges for n in got[0])
        print(f"P={count:>6} ({edges} edges): gradients_many {many:8.4f} s | loop of gradients {loop:8.4f} s"
              f" | {loop / many:6.1f}x  (largest difference {worst:.1e} of a field's scale)")


def _scaled_difference(ours: list[Any], theirs: np.ndarray) -> float:
    """Largest |difference| of any network's edge or node gradients, relative to that field's scale in ``ours``."""
    fields = [r.edge_grads for r in ours] + [r.deltas for r in ours]
    cuts = np.cumsum([0] + [f.size for f in fields])
    return max((float(np.abs(theirs[a:b] - f).max() / max(np.abs(f).max(), 1e-300))
                for f, a, b in zip(fields, cuts[:-1], cuts[1:]) if f.size), default=0.0)


def bench_jax(sizes: list[int], runs: int) -> None:
    """gradients_many against a padded JAX population (TensorNEAT's way) in a child process, on the same networks."""
    from benchmarks.jax_baseline import available
    from benchmarks.timing import SETTLE_SECONDS, PeerChild

    if not available():
        print("padded JAX: skipped (jax not installed: pip install '.[bench]')")
        return
    X, T = _rows(4)
    for count in sizes:
        base = 5000 * count
        spec = {"count": count, "seed": base, "fresh": runs + 1}
        with PeerChild(spec, ROWS, 4, warmup=1, module="benchmarks.jax_population") as child:
            worst = _scaled_difference(edgegrad.gradients_many(neat_size_population(base, count), X, T, loss="mse"),
                                       child.edge_grads())
            if not worst <= 1e-9:
                raise SystemExit(f"P={count}: padded JAX's gradients differ from gradients_many's by {worst:.1e}")
            ours = theirs = float("inf")
            for i in range(runs):   # the child's i-th run is on population base + 1 + i (its warm-up took the first)
                nets = neat_size_population(base + 1 + i, count)
                time.sleep(SETTLE_SECONDS)
                start = time.perf_counter()
                edgegrad.gradients_many(nets, X, T, loss="mse")
                ours = min(ours, time.perf_counter() - start)
                time.sleep(SETTLE_SECONDS)
                theirs = min(theirs, child.run())
            info = child.info
        print(f"P={count:>6}: gradients_many {ours:8.4f} s | padded JAX jit(vmap(value_and_grad)) {theirs:8.4f} s"
              f" (compiled apart in {info['compile_s']:.1f} s; jax {info['version']}, {info['vertices']} vertices each)"
              f" | {theirs / ours:6.1f}x  (largest difference {worst:.1e} of a field's scale)")


def _reweighted(nets: list[edgegrad.Network], seed: int) -> list[edgegrad.Network]:
    """The same topologies with new weights and biases (a fine-tuning step's networks)."""
    rng = np.random.default_rng(seed)
    return [edgegrad.Network.from_arrays(n.inputs, n.outputs, n.node_ids, n.activations,
                                         rng.normal(0.0, 0.5, n.n_nodes), n.src, n.dst, rng.normal(0.0, 1.0, n.n_edges))
            for n in nets]


def bench_finetune(count: int, runs: int) -> None:
    """A fine-tuning step (same topologies, new weights: the packed topology is reused) against a fresh generation."""
    X, T = _rows(3)
    base = neat_size_population(77, count)
    edgegrad.gradients_many(base, X, T, loss="mse")
    step, _ = _best(runs, lambda i: _reweighted(base, i), lambda nets: edgegrad.gradients_many(nets, X, T, loss="mse"))
    fresh, _ = _best(runs, lambda i: neat_size_population(7700 + i, count),
                     lambda nets: edgegrad.gradients_many(nets, X, T, loss="mse"))
    print(f"P={count:>6} fine-tuning step (same topologies, new weights): gradients_many {step:8.4f} s"
          f" | a new generation {fresh:8.4f} s")


def _neat_config(folder: str, count: int) -> Any:
    import neat

    text = (Path(__file__).resolve().parent.parent / "examples" / "neat" / "xor.cfg").read_text()
    changes = {"num_inputs": "4", "num_outputs": "2", "activation_options": " ".join(
        a for a in NEAT_ACTIVATIONS if a in ("sigmoid", "tanh", "relu", "identity", "elu", "gauss", "abs")),
        "activation_mutate_rate": "0.5", "node_add_prob": "0.6", "conn_add_prob": "0.7", "pop_size": str(count)}
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        lines.append(f"{key} = {changes[key]}" if "=" in line and key in changes else line)
    path = os.path.join(folder, "neat.cfg")
    Path(path).write_text("\n".join(lines) + "\n")
    return neat.Config(neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet,
                       neat.DefaultStagnation, path)


def _mutated_genomes(config: Any, mutations: int, seed: int) -> list[Any]:
    """neat's initial population (its innovation tracker set up), each genome mutated ``mutations`` times."""
    import neat

    random.seed(seed)
    genomes = list(neat.Population(config, seed=seed).population.values())
    for genome in genomes:
        for _ in range(mutations):
            genome.mutate(config.genome_config)
    return genomes


def _fresh(nets: list[edgegrad.Network]) -> list[edgegrad.Network]:
    """The same genomes' networks again: forget their packed topologies, so the timed call builds them anew."""
    from edgegrad.engine.population_pack import clear_topology_cache

    clear_topology_cache()
    return nets


def bench_neat(count: int, runs: int) -> None:
    """outputs_many against neat-python's FeedForwardNetwork.activate, row by row, on mutated genomes."""
    import neat

    from edgegrad.interop.neatnet import map_population

    X, _ = _rows(1)
    rows = X.tolist()
    with tempfile.TemporaryDirectory() as folder:
        config = _neat_config(folder, count)
        genomes = _mutated_genomes(config, 12, 7)
        nodes = np.mean([len(m.net.node_ids) for m in map_population(genomes, config)])
        edges = np.mean([m.net.n_edges for m in map_population(genomes, config)])
        ours, got = _best(runs, lambda i: _fresh([m.net for m in map_population(genomes, config)]),
                          lambda nets: edgegrad.outputs_many(nets, X))
        theirs, want = _best(max(1, runs // 2), lambda i: [neat.nn.FeedForwardNetwork.create(g, config) for g in genomes],
                             lambda nets: [[net.activate(r) for r in rows] for net in nets])
    worst = max(float(np.abs(a - np.array(b)).max()) for a, b in zip(got, want))
    print(f"neat, {count} genomes ({nodes:.1f} nodes, {edges:.1f} edges on average), B={ROWS}: outputs_many"
          f" {ours:8.4f} s | FeedForwardNetwork.activate {theirs:8.4f} s | {theirs / ours:6.0f}x"
          f"  (largest difference {worst:.1e})")


def rss_child(count: int) -> None:
    """(In a subprocess.) Peak RSS after building ``count`` networks, and after gradients_many on them."""
    X, T = _rows(2)
    edgegrad.gradients_many(neat_size_population(99, 4), X, T, loss="mse")   # numba's load, outside the clock
    nets = neat_size_population(5, count)
    built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    edgegrad.gradients_many(nets, X, T, loss="mse")
    took = time.perf_counter() - start
    print(built, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, took)


def bench_rss(count: int) -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.population", "--rss-child", str(count)],
                         capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parent.parent)).stdout.split()
    built, peak, took = int(out[0]) / 1024, int(out[1]) / 1024, float(out[2])
    print(f"P={count}: peak RSS {peak:.0f} MiB (networks alone {built:.0f} MiB; limit 2048 MiB), call {took:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="P = 100, 1,000; best of 2; RSS at P = 20,000")
    parser.add_argument("--sizes", help="comma-separated P values (default 100,1000,10000)")
    parser.add_argument("--runs", type=int, help="repetitions, best taken (default 5)")
    parser.add_argument("--rss-networks", type=int, help="P of the peak-RSS run (default 100000; 0: skip)")
    parser.add_argument("--skip-neat", action="store_true")
    parser.add_argument("--jax-sizes", help="P values of the padded JAX baseline (default: those of --sizes up to 1,000;"
                        " 0: skip)")
    parser.add_argument("--service", action="store_true",
                        help="also through the service: one population job vs submit_many (benchmarks.population_service)")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100, 1000] if args.quick else
                                                                          [100, 1000, 10000])
    runs = args.runs or (2 if args.quick else 5)
    rss = args.rss_networks if args.rss_networks is not None else (20_000 if args.quick else 100_000)
    print(f"float64, B={ROWS}, mse mean, kernel setting {os.environ.get('EDGEGRAD_KERNEL', 'auto')},"
          f" best of {runs}, {os.cpu_count()} CPUs")
    bench_gradients(sizes, runs)
    jax_sizes = [int(s) for s in args.jax_sizes.split(",") if int(s)] if args.jax_sizes else \
        [s for s in sizes if s <= 1000]
    if jax_sizes:
        bench_jax(jax_sizes, runs)
    bench_finetune(1000, runs)
    if not args.skip_neat:
        bench_neat(1000, runs)
    if rss:
        bench_rss(rss)
    if args.service:
        from benchmarks.population_service import bench_service

        bench_service(1000, runs)


if __name__ == "__main__":
    main()
