"""JAX CPU baselines (optional): any DAG level by level with segment_sum, under ``jit``.

Modes: ``loss`` (mse mean, ``jit(grad)``), ``per_example`` (``jit(vmap(grad))`` of each example's
term), ``output`` (``jit(vmap(jacrev))``: B×K×E and B×K×N). Float64 (``jax_enable_x64``); results
in file order, so they double as an independent check. jax is never a dependency of edgegrad
(``pip install '.[bench]'``); run through ``timing.PeerChild`` so its threads never spin while
edgegrad is being timed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable

import numpy as np

from edgegrad import Network

__all__ = ["available", "DagModel", "main"]


def available() -> bool:
    """True when jax looks importable (found on the path), without importing it here."""
    try:
        return importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):
        return False


def _activations() -> dict[str, Callable]:
    import jax
    import jax.numpy as jnp

    return {
        "identity": lambda z: z,
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01),
        "elu": jax.nn.elu,
        "softplus": jax.nn.softplus,
        "gelu": lambda z: jax.nn.gelu(z, approximate=False),
        "silu": jax.nn.silu,
        "sin": jnp.sin,
        "gauss": lambda z: jnp.exp(-z * z),
        "abs": jnp.abs,
    }


class DagModel:
    """A network as JAX code: per level, gather sources, weight, ``segment_sum`` into the level's nodes.

    Vertex values live in one (V, B) array updated level by level (in place under ``jit``); each
    level's nodes are sorted by activation so each activation applies to one slice.
    """

    def __init__(self, net: Network) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.jnp, self.act = jnp, _activations()
        levels = np.asarray(net.levels)
        n_in = net.n_inputs
        names = sorted(self.act)
        code = np.concatenate([np.full(n_in, -1), [names.index(a) for a in net.activations]])
        order = np.lexsort((np.arange(levels.size), code, levels))     # vertices by (level, activation)
        position = np.empty(levels.size, dtype=np.int64)
        position[order] = np.arange(levels.size)                       # vertex -> row of the value array
        counts = np.bincount(levels)
        first = np.concatenate([[0], np.cumsum(counts)])
        dst_level = levels[net.dst]
        edge_order = np.argsort(dst_level, kind="stable")
        bounds = np.searchsorted(dst_level[edge_order], np.arange(counts.size + 1))
        self.n_vertices, self.n_in = levels.size, n_in
        self.levels = []
        for level in range(1, counts.size):
            lo, hi = int(first[level]), int(first[level + 1])
            eids = edge_order[bounds[level]:bounds[level + 1]]
            vc = code[order[lo:hi]]
            cuts = np.flatnonzero(np.diff(vc)) + 1
            slices = [(names[vc[a]], int(a), int(b)) for a, b in zip(np.r_[0, cuts], np.r_[cuts, vc.size])]
            self.levels.append((lo, hi, jnp.asarray(order[lo:hi] - n_in), jnp.asarray(position[net.src[eids]]),
                                jnp.asarray(position[net.dst[eids]] - lo), jnp.asarray(eids), slices))
        self.out_rows = jnp.asarray(position[net.output_index + n_in])
        self.weights = jnp.asarray(np.asarray(net.weights))
        self.biases = jnp.asarray(np.asarray(net.biases))

    def forward(self, w: object, b: object, X: object) -> object:
        """Outputs (B×K) for inputs X (B×I) given weights and biases in file order."""
        import jax

        jnp = self.jnp
        values = jnp.zeros((self.n_vertices, X.shape[0]), dtype=X.dtype).at[:self.n_in].set(X.T)
        for lo, hi, nodes, src, dst, eids, slices in self.levels:
            z = jnp.broadcast_to(b[nodes][:, None], (hi - lo, X.shape[0]))
            if eids.size:
                z = z + jax.ops.segment_sum(values[src] * w[eids][:, None], dst, num_segments=hi - lo)
            o = jnp.concatenate([self.act[a](z[s:e]) for a, s, e in slices]) if len(slices) > 1 \
                else self.act[slices[0][0]](z)
            values = values.at[lo:hi].set(o)
        return values[self.out_rows].T

    def step(self, mode: str, X: np.ndarray, T: np.ndarray) -> Callable[[], object]:
        """A jitted function of no arguments computing the mode's gradients (blocks until done)."""
        import jax

        jnp = self.jnp
        Xj, Tj = jnp.asarray(X), jnp.asarray(T)
        w, b = self.weights, self.biases
        scale = 1.0 / T.size

        def loss(w, b, X, T):
            return jnp.sum((self.forward(w, b, X) - T) ** 2) * scale

        if mode == "loss":
            fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
            return lambda: jax.block_until_ready(fn(w, b, Xj, Tj))
        if mode == "per_example":
            one = lambda w, b, x, t: loss(w, b, x[None], t[None])  # noqa: E731
            fn = jax.jit(jax.vmap(jax.grad(one, argnums=(0, 1)), in_axes=(None, None, 0, 0)))
            return lambda: jax.block_until_ready(fn(w, b, Xj, Tj))
        single = lambda w, b, x: self.forward(w, b, x[None])[0]  # noqa: E731
        fn = jax.jit(jax.vmap(jax.jacrev(single, argnums=(0, 1)), in_axes=(None, None, 0)))
        return lambda: jax.block_until_ready(fn(w, b, Xj))


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.jax_baseline SPEC_JSON [--batch B] [--seed S] [--mode M]``: serve timing commands."""
    import argparse
    import json

    import jax

    from .networks import batch as make_batch
    from .networks import build
    from .timing import serve_steps

    p = argparse.ArgumentParser(prog="python -m benchmarks.jax_baseline")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mode", choices=("loss", "per_example", "output"), default="loss")
    args = p.parse_args(argv)
    net = build(json.loads(args.spec))
    X, T = make_batch(net, args.batch, args.seed)
    step = DagModel(net).step(args.mode, X, T)

    def grads() -> np.ndarray:
        g = step()[0]
        return np.asarray(g.sum(axis=0) if args.mode == "per_example" else g)

    serve_steps(step, grads, {"kind": {"loss": "jit(grad), segment_sum by level",
                                       "per_example": "jit(vmap(grad))", "output": "jit(vmap(jacrev))"}[args.mode],
                              "threads": "XLA", "version": jax.__version__}, args.warmup, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
