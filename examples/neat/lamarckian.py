"""Lamarckian NEAT on concentric circles: every genome of every generation fine-tuned by a few gradient
steps through edgegrad, its tuned weights written back into the genome, against plain NEAT.

    pip install 'edgegrad[neat]'
    python examples/neat/lamarckian.py                        # plain NEAT, then the Lamarckian run (same seed)
    python examples/neat/lamarckian.py --plot curves.svg      # and both curves, against generations and seconds
    python examples/neat/lamarckian.py --server ADDR          # the gradient steps through the service
    python examples/neat/lamarckian.py --quick                # a few generations (the test)

Each gradient step of the Lamarckian run is ONE ``edgegrad.gradients_many`` call for the whole
generation (mse against the 0/1 labels); ``NeatMap.genome_gradients`` turns each network's
gradients into the genome's own weights and biases, Adam moves them and ``NeatMap.write_back``
writes them into the genome, which its offspring inherit. A genome's fitness is 1 − mse of its
network on the rows, from ``edgegrad.outputs_many`` in both runs (equal to neat's own
``FeedForwardNetwork``, which is timed on the same genomes beside it, and checked against it).

A run's clock counts everything its generations do (neat's reproduction and speciation included)
except neat's own evaluation, which runs only to be timed beside edgegrad's. Prints one line per
generation, then a JSON summary line: the best fitness each run reached within the same seconds, and
its best genome's mse and accuracy on 1,000 new rows.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import neat
import numpy as np

import edgegrad
from edgegrad.interop.neatnet import NeatMap, map_population

HERE = Path(__file__).resolve().parent


def circles(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two noisy concentric rings (radius 1: label 0; radius 0.5: label 1), ``count`` points, shuffled."""
    rng = np.random.default_rng(seed)
    label = np.arange(count) % 2
    angle = rng.uniform(0.0, 2.0 * math.pi, count)
    radius = np.where(label == 1, 0.5, 1.0) + rng.normal(0.0, 0.08, count)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    order = rng.permutation(count)
    return X[order], label[order, None].astype(np.float64)


@dataclass
class Generation:
    """One generation's figures."""

    best: float
    mean: float
    seconds: float       #: the generation's wall time (neat's own evaluation left out)
    edgegrad_s: float    #: edgegrad's part: fine-tuning and evaluating every genome
    calls_s: float       #: of which inside the population calls (the rest: building networks, Adam, write-back)
    neat_eval_s: float   #: neat-python's FeedForwardNetwork evaluating the same genomes
    agree: float         #: largest |edgegrad's fitness − neat's| over the generation


@dataclass
class Run:
    """A seeded NEAT run: its generations and its clock."""

    name: str
    generations: list[Generation] = field(default_factory=list)
    best_net: Any = None   #: the network of the fittest genome so far, as it was evaluated (after its fine-tuning)

    def clock(self) -> list[float]:
        return np.cumsum([g.seconds for g in self.generations]).tolist()

    def best_within(self, seconds: float) -> tuple[float, int]:
        """The best fitness reached by ``seconds`` of this run's clock, and at which generation."""
        best, gen = -math.inf, -1
        for i, (g, t) in enumerate(zip(self.generations, self.clock())):
            if t > seconds:
                break
            if g.best > best:
                best, gen = g.best, i
        return best, gen


class Gradients:
    """``gradients_many`` / ``outputs_many`` in process, or through the service's ``Client`` with ``server``."""

    def __init__(self, server: str | None) -> None:
        self.client = None
        self.seconds = 0.0   #: time spent inside the population calls
        if server:
            self.client = edgegrad.Client(server)

    def gradients(self, nets: list[edgegrad.Network], X: np.ndarray, T: np.ndarray) -> list[Any]:
        source = self.client if self.client is not None else edgegrad
        start = time.perf_counter()
        results = source.gradients_many(nets, X, targets=T, loss="mse")
        self.seconds += time.perf_counter() - start
        return results

    def outputs(self, nets: list[edgegrad.Network], X: np.ndarray) -> list[np.ndarray]:
        source = self.client if self.client is not None else edgegrad
        start = time.perf_counter()
        outs = source.outputs_many(nets, X)
        self.seconds += time.perf_counter() - start
        return outs

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def finetune(maps: list[NeatMap], genomes: list[Any], engine: Gradients, X: np.ndarray, T: np.ndarray,
             steps: int, lr: float, gc: Any) -> list[edgegrad.Network]:
    """``steps`` Adam steps on every genome's own weights and biases, one population call per step; written back.

    The genomes' parameters live in two flat vectors (each genome a slice), so Adam runs on all at once.
    """
    cuts_w = np.cumsum([0] + [m.genome_weights.size for m in maps])
    cuts_b = np.cumsum([0] + [m.genome_biases.size for m in maps])
    w = np.concatenate([m.genome_weights for m in maps])
    b = np.concatenate([m.genome_biases for m in maps])
    theta = np.concatenate([w, b])
    m1, m2 = np.zeros_like(theta), np.zeros_like(theta)
    nets = [m.network(w[cuts_w[i]:cuts_w[i + 1]], b[cuts_b[i]:cuts_b[i + 1]]) for i, m in enumerate(maps)]
    for step in range(1, steps + 1):
        results = engine.gradients(nets, X, T)
        pairs = [m.genome_gradients(r) for m, r in zip(maps, results)]
        grad = np.concatenate([p[0] for p in pairs] + [p[1] for p in pairs])
        m1 = 0.9 * m1 + 0.1 * grad
        m2 = 0.999 * m2 + 0.001 * grad * grad
        theta -= lr * (m1 / (1 - 0.9 ** step)) / (np.sqrt(m2 / (1 - 0.999 ** step)) + 1e-8)
        w = np.clip(theta[:w.size], gc.weight_min_value, gc.weight_max_value)
        b = np.clip(theta[w.size:], gc.bias_min_value, gc.bias_max_value)
        theta = np.concatenate([w, b])
        nets = [m.network(w[cuts_w[i]:cuts_w[i + 1]], b[cuts_b[i]:cuts_b[i + 1]]) for i, m in enumerate(maps)]
    for i, (m, genome) in enumerate(zip(maps, genomes)):
        m.write_back(genome, w[cuts_w[i]:cuts_w[i + 1]], b[cuts_b[i]:cuts_b[i + 1]])
    return nets


def neat_fitness(genomes: list[Any], config: neat.Config, X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """1 − mse of every genome by neat-python's own FeedForwardNetwork, row by row."""
    rows = X.tolist()
    out = []
    for g in genomes:
        net = neat.nn.FeedForwardNetwork.create(g, config)
        y = np.array([net.activate(r) for r in rows])
        out.append(1.0 - float(np.mean((y - T) ** 2)))
    return np.array(out)


def evolve(name: str, config: neat.Config, X: np.ndarray, T: np.ndarray, args: argparse.Namespace,
           engine: Gradients, steps: int, seconds: float | None = None) -> Run:
    """A seeded NEAT run of ``args.generations`` generations (or until ``seconds`` of its clock), printing each."""
    random.seed(args.seed)
    population = neat.Population(config, seed=args.seed)
    run = Run(name)
    print(f"{name}: gen   best    mean  gen s  edgegrad s (calls)  neat eval s  |edgegrad-neat|", flush=True)
    holder: dict[str, float] = {}

    def fitness(pairs: list[tuple[int, Any]], cfg: neat.Config) -> None:
        genomes = [g for _, g in pairs]
        start, calls = time.perf_counter(), engine.seconds
        maps = map_population(genomes, cfg)
        nets = finetune(maps, genomes, engine, X, T, steps, args.lr, cfg.genome_config) if steps else \
            [m.net for m in maps]
        outs = engine.outputs(nets, X)
        fit = np.array([1.0 - float(np.mean((y - T) ** 2)) for y in outs])
        for g, f in zip(genomes, fit.tolist()):
            g.fitness = f
        holder["edgegrad"], holder["calls"] = time.perf_counter() - start, engine.seconds - calls
        start = time.perf_counter()
        theirs = neat_fitness(genomes, cfg, X, T)
        holder["neat"] = time.perf_counter() - start
        holder["agree"] = float(np.abs(fit - theirs).max())
        holder["best"], holder["mean"] = float(fit.max()), float(fit.mean())
        if not run.generations or holder["best"] > max(g.best for g in run.generations):
            run.best_net = nets[int(fit.argmax())]

    while len(run.generations) < args.generations and (seconds is None or sum(run.clock()[-1:]) < seconds):
        start = time.perf_counter()
        population.run(fitness, 1)
        took = time.perf_counter() - start - holder["neat"]
        gen = Generation(holder["best"], holder["mean"], took, holder["edgegrad"], holder["calls"], holder["neat"],
                         holder["agree"])
        run.generations.append(gen)
        print(f"{name}: {len(run.generations) - 1:3d}  {gen.best:.4f}  {gen.mean:.4f}  {gen.seconds:5.2f}"
              f"  {gen.edgegrad_s:10.3f} ({gen.calls_s:5.3f})  {gen.neat_eval_s:11.3f}  {gen.agree:.1e}", flush=True)
    return run


def summary(plain: Run, lamarck: Run, steps: int, X_test: np.ndarray, T_test: np.ndarray,
            engine: Gradients) -> dict:
    """Both runs' best fitness within the same seconds (the shorter run's clock), and their best genomes on new rows."""
    seconds = min(plain.clock()[-1], lamarck.clock()[-1])
    p_best, p_gen = plain.best_within(seconds)
    l_best, l_gen = lamarck.best_within(seconds)
    tests = {}
    for run in (plain, lamarck):
        y = engine.outputs([run.best_net], X_test)[0]
        tests[run.name] = (float(np.mean((y - T_test) ** 2)), float(np.mean((y > 0.5) == (T_test > 0.5))))
    return {"seconds": round(seconds, 2), "steps_per_generation": steps,
            "plain_best": float(f"{p_best:.6g}"), "plain_generation": p_gen,
            "lamarckian_best": float(f"{l_best:.6g}"), "lamarckian_generation": l_gen,
            "plain_mse": float(f"{1 - p_best:.3g}"), "lamarckian_mse": float(f"{1 - l_best:.3g}"),
            "plain_test_mse": float(f"{tests['plain'][0]:.3g}"), "plain_test_accuracy": tests["plain"][1],
            "lamarckian_test_mse": float(f"{tests['lamarckian'][0]:.3g}"),
            "lamarckian_test_accuracy": tests["lamarckian"][1],
            "largest_edgegrad_neat_difference": max(g.agree for g in plain.generations + lamarck.generations),
            "lamarckian_s_per_generation": round(float(np.mean([g.seconds for g in lamarck.generations])), 3),
            "plain_s_per_generation": round(float(np.mean([g.seconds for g in plain.generations])), 3),
            "lamarckian_calls_s_per_generation": round(float(np.mean([g.calls_s for g in lamarck.generations])), 3),
            "neat_eval_s_per_generation": round(float(np.mean([g.neat_eval_s for g in plain.generations])), 3),
            "plain_curve": [round(g.best, 6) for g in plain.generations],
            "lamarckian_curve": [round(g.best, 6) for g in lamarck.generations]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=60, help="generations of the Lamarckian run")
    parser.add_argument("--steps", type=int, default=10, help="gradient steps per generation")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam's step size")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server", help="host:port of an edgegrad server: the gradient steps through the service")
    parser.add_argument("--plot", help="write both curves to this SVG file")
    parser.add_argument("--quick", action="store_true", help="4 Lamarckian generations, 3 steps, 60 genomes")
    parser.add_argument("--config", default=str(HERE / "circles.cfg"))
    args = parser.parse_args(argv)
    config = neat.Config(neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet,
                         neat.DefaultStagnation, args.config)
    if args.quick:
        args.generations, args.steps, args.rows = 4, 3, 100
        config.pop_size = 60
    X, T = circles(args.rows, args.seed)
    X_test, T_test = circles(1000, args.seed + 1)
    engine = Gradients(args.server)
    try:
        warm = map_population(list(neat.Population(config, seed=args.seed).population.values())[:2], config)
        engine.gradients([m.net for m in warm], X, T), engine.outputs([m.net for m in warm], X)   # compile, unclocked
        lamarck = evolve("lamarckian", config, X, T, args, engine, args.steps)
        # plain NEAT gets the Lamarckian run's seconds (or 20x its generations, whichever comes first)
        plain_args = argparse.Namespace(**{**vars(args), "generations": 20 * args.generations})
        plain = evolve("plain", config, X, T, plain_args, engine, 0, seconds=lamarck.clock()[-1])
        report = summary(plain, lamarck, args.steps, X_test, T_test, engine)
    finally:
        engine.close()
    if args.plot:
        from curves import write_curves

        write_curves(args.plot, {r.name: ([g.best for g in r.generations], r.clock()) for r in (plain, lamarck)},
                     title=f"NEAT on concentric circles, seed {args.seed}: best fitness (1 − mse)")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
