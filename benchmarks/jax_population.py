"""A padded JAX population, TensorNEAT's way (optional baseline for ``benchmarks.population``).

Every network is padded to ``MAX_VERTICES`` vertices (4 inputs + 40 hidden + 2 outputs, the largest
NEAT-size network): a dense V×V weight matrix, a bias and an activation code per vertex, and its
vertices in topological order (padding vertices last, weightless). One network's forward pass walks
the vertices one at a time (``lax.fori_loop``: ``z = values @ W[:, v] + b[v]``, the activation
chosen by ``lax.switch``), as TensorNEAT's feed-forward genome does; the population is ``vmap``-ed
over the networks and the whole step is ``jit(vmap(value_and_grad))`` of each network's mse (mean).
Float64 (``jax_enable_x64``). The shapes do not depend on the networks, so one compilation serves
every population of a size; its time is measured apart and reported in the ready line.

Run as a ``timing.PeerChild``: ``python -m benchmarks.jax_population '{"count": P, "seed": S, "fresh": R}'
--batch B --seed ROWS_SEED``. Each ``run`` times one step on the next of R freshly built populations
(seeds S, S+1, …; built and padded before the clock); ``grads PATH`` saves the first population's
gradients, every network's edge gradients then every network's node gradients (``gradients_many``'s
``edge_grads`` and ``deltas``, concatenated in network order), for the parent to check.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.jax_baseline import _activations
from benchmarks.population_nets import neat_size_population, neat_size_rows
from edgegrad import Network

__all__ = ["MAX_VERTICES", "pad", "population_step", "main"]

MAX_VERTICES = 4 + 40 + 2


def pad(nets: list[Network], names: list[str], vertices: int = MAX_VERTICES) -> dict[str, np.ndarray]:
    """The population as padded arrays: W (P×V×V), b (P×V), act (P×V codes into ``names``), order (P×(V−I))."""
    count, n_in = len(nets), nets[0].n_inputs
    W = np.zeros((count, vertices, vertices))
    b = np.zeros((count, vertices))
    act = np.full((count, vertices), names.index("identity"), dtype=np.int32)
    order = np.zeros((count, vertices - n_in), dtype=np.int32)
    outs = np.zeros((count, nets[0].n_outputs), dtype=np.int32)
    for p, net in enumerate(nets):
        n = net.n_nodes
        W[p, net.src, net.dst] = np.asarray(net.weights)
        b[p, n_in:n_in + n] = np.asarray(net.biases)
        act[p, n_in:n_in + n] = [names.index(a) for a in net.activations]
        computed = n_in + np.argsort(np.asarray(net.levels)[n_in:], kind="stable")
        order[p] = np.concatenate([computed, np.arange(n_in + n, vertices)])
        outs[p] = np.asarray(net.output_index) + n_in
    return {"W": W, "b": b, "act": act, "order": order, "outs": outs}


def population_step(names: list[str]) -> Callable[..., Any]:
    """``jit(vmap(value_and_grad(mse)))`` over padded networks: (losses P, (dW P×V×V, db P×V))."""
    import jax
    import jax.numpy as jnp

    acts = _activations()
    branches = [acts[name] for name in names]

    def forward(W: Any, b: Any, act: Any, order: Any, outs: Any, X: Any) -> Any:
        n_in = X.shape[1]
        values = jnp.zeros((X.shape[0], W.shape[0]), dtype=X.dtype).at[:, :n_in].set(X)

        def vertex(k: Any, values: Any) -> Any:
            v = order[k]
            z = values @ W[:, v] + b[v]
            return values.at[:, v].set(jax.lax.switch(act[v], branches, z))

        values = jax.lax.fori_loop(0, order.shape[0], vertex, values)
        return values[:, outs]

    def loss(W: Any, b: Any, act: Any, order: Any, outs: Any, X: Any, T: Any) -> Any:
        return jnp.mean((forward(W, b, act, order, outs, X) - T) ** 2)

    one = jax.value_and_grad(loss, argnums=(0, 1))
    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None, None)))


def edge_and_node_grads(nets: list[Network], grads: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Every network's edge gradients, then every network's node gradients, from the padded dW and db."""
    dW, db = (np.asarray(g) for g in grads)
    edges = [dW[p, n.src, n.dst] for p, n in enumerate(nets)]
    nodes = [db[p, n.n_inputs:n.n_inputs + n.n_nodes] for p, n in enumerate(nets)]
    return np.concatenate(edges + nodes)


def main(argv: list[str] | None = None) -> int:
    """The peer child's command loop (see the module docstring)."""
    import argparse

    import jax

    jax.config.update("jax_enable_x64", True)
    from benchmarks.timing import serve_steps

    p = argparse.ArgumentParser(prog="python -m benchmarks.jax_population")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args(argv)
    spec = json.loads(args.spec)
    X, T = (jax.numpy.asarray(a) for a in neat_size_rows(args.seed, args.batch))
    names = sorted(_activations())
    pops = [neat_size_population(spec["seed"] + i, spec["count"]) for i in range(spec.get("fresh", 1))]
    padded = [jax.device_put(pad(nets, names)) for nets in pops]
    step = population_step(names)
    start = time.perf_counter()
    first = padded[0]
    compiled = step.lower(first["W"], first["b"], first["act"], first["order"], first["outs"], X, T).compile()
    compile_s = time.perf_counter() - start
    turn = [0]

    def run() -> Any:
        d = padded[turn[0] % len(padded)]
        turn[0] += 1
        return jax.block_until_ready(compiled(d["W"], d["b"], d["act"], d["order"], d["outs"], X, T))

    def grads() -> np.ndarray:
        d = padded[0]
        return edge_and_node_grads(pops[0], compiled(d["W"], d["b"], d["act"], d["order"], d["outs"], X, T)[1])

    serve_steps(run, grads, {"kind": "padded jit(vmap(value_and_grad)), vertex by vertex", "threads": "XLA",
                             "version": jax.__version__, "compile_s": compile_s, "vertices": MAX_VERTICES},
                args.warmup, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
