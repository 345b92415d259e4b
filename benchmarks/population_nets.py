"""NEAT-size random networks for the population benchmark and tests: 4 inputs, 2 outputs, 0–40 hidden nodes,
fan-in 1–4, mixed activations; the same seed gives the same population."""

from __future__ import annotations

import numpy as np

from edgegrad import Network

__all__ = ["NEAT_ACTIVATIONS", "neat_size_network", "neat_size_population", "neat_size_rows"]

NEAT_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity", "sin", "gauss", "abs", "elu", "softplus")


def neat_size_network(rng: np.random.Generator, n_inputs: int = 4, n_outputs: int = 2,
                      max_hidden: int = 40) -> Network:
    """One network: hidden nodes in a random topological order, then the outputs, each reading 1–4 earlier vertices."""
    hidden = int(rng.integers(0, max_hidden + 1))
    n = hidden + n_outputs
    src, dst = [], []
    for v in range(n):
        vertex = n_inputs + v
        earlier = n_inputs + min(v, hidden)            # outputs read inputs and hidden nodes only
        fan_in = min(int(rng.integers(1, 5)), earlier)
        src.extend(rng.choice(earlier, size=fan_in, replace=False).tolist())
        dst.extend([vertex] * fan_in)
    acts = rng.choice(NEAT_ACTIVATIONS, size=n).tolist()
    return Network.from_arrays([f"i{i}" for i in range(n_inputs)],
                               [f"n{hidden + k}" for k in range(n_outputs)], [f"n{v}" for v in range(n)], acts,
                               rng.normal(0.0, 0.5, n), np.array(src), np.array(dst),
                               rng.normal(0.0, 1.0, len(src)))


def neat_size_population(seed: int, count: int) -> list[Network]:
    """``count`` NEAT-size networks from ``seed``."""
    rng = np.random.default_rng(seed)
    return [neat_size_network(rng) for _ in range(count)]


def neat_size_rows(seed: int, rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (rows×4) and targets (rows×2) from ``seed``, standard normal."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 4)), rng.normal(size=(rows, 2))
