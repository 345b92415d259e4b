"""Evolve a small NEAT population on XOR (neat-python), then fine-tune the best genome's weights
by gradient descent through edgegrad, and check the tuned genome with neat's own network.

    pip install 'edgegrad[neat]'
    python examples/neat/finetune.py [--generations 20] [--steps 300] [--seed 3]

Evolution finds the topology; edgegrad's exact gradients then tune the genome's own connection
weights and node biases (``NeatMap.genome_gradients`` applies neat's z factors, e.g. 5 for its
sigmoid, so each step is a step in the genome's parameters). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import neat
import numpy as np

import edgegrad
from edgegrad.interop.neatnet import map_genome

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
T = np.array([[0.0], [1.0], [1.0], [0.0]])


def neat_mse(genome: object, config: neat.Config) -> float:
    """The mean squared error of neat's own FeedForwardNetwork for the genome."""
    net = neat.nn.FeedForwardNetwork.create(genome, config)
    return float(np.mean([(net.activate(x.tolist())[0] - t[0]) ** 2 for x, t in zip(X, T)]))


def evolve(config: neat.Config, generations: int, seed: int) -> object:
    """The best genome of a seeded NEAT run."""
    random.seed(seed)

    def fitness(genomes: list, cfg: neat.Config) -> None:
        for _, g in genomes:
            g.fitness = 1.0 - neat_mse(g, cfg)

    return neat.Population(config, seed=seed).run(fitness, generations)


def finetune(genome: object, config: neat.Config, steps: int, lr: float) -> list[float]:
    """Plain gradient descent on the genome's weights and biases (MSE loss); the losses on the way."""
    m = map_genome(genome, config)
    w, b = m.genome_weights.copy(), m.genome_biases.copy()
    losses = []
    for _ in range(steps):
        res = edgegrad.gradients(m.network(w, b), X, targets=T, loss="mse")
        gw, gb = m.genome_gradients(res)
        w -= lr * gw
        b -= lr * gb
        losses.append(res.loss)
    m.write_back(genome, w, b)
    return losses


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--config", default=str(Path(__file__).with_name("xor.cfg")))
    args = parser.parse_args(argv)
    config = neat.Config(neat.DefaultGenome, neat.DefaultReproduction, neat.DefaultSpeciesSet,
                         neat.DefaultStagnation, args.config)
    best = evolve(config, args.generations, args.seed)
    before = neat_mse(best, config)
    losses = finetune(best, config, args.steps, args.lr)
    after = neat_mse(best, config)
    net = edgegrad.Network.from_neat(best, config)
    report = {"nodes": net.n_nodes, "edges": net.n_edges, "activations": sorted(set(net.activations)),
              "mse_evolved": before, "mse_finetuned": after, "edgegrad_first_loss": losses[0],
              "edgegrad_last_loss": losses[-1]}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
