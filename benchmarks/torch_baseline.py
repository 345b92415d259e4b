"""PyTorch CPU baselines (optional): any DAG level by level with index_add + autograd, and nn.Linear MLPs.

Both compute the mse loss gradient in float64 (or float32) for a batch and return it in the
network's file order, so they double as the independent autograd reference for ``--check``.
Import this module only after checking ``available()``; torch is never a dependency of edgegrad.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import NamedTuple, TextIO

import numpy as np

from edgegrad import Network

from .networks import dense_layers

__all__ = ["available", "TorchGrads", "LevelModel", "LinearModel", "serve"]


def available() -> bool:
    """True when torch looks importable (found on the path), without importing it here."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


class TorchGrads(NamedTuple):
    """An mse-loss gradient computed by torch, laid out in file order."""

    outputs: np.ndarray         #: B×K
    loss: float
    edge_grads: np.ndarray      #: E
    deltas: np.ndarray          #: N (∂L/∂bias)


def _activations() -> dict[str, Callable]:
    import torch
    import torch.nn.functional as F

    return {
        "identity": lambda z: z,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
        "elu": F.elu,
        "softplus": F.softplus,
        "gelu": F.gelu,                   # exact erf form (approximate='none')
        "silu": F.silu,
        "sin": torch.sin,
        "gauss": lambda z: torch.exp(-z * z),
        "abs": torch.abs,
    }


class _Level(NamedTuple):
    node_ids: object            # LongTensor: node positions (file order) of this level, grouped by activation
    groups: list                # [(level it reads from, src positions there, edge ids)]
    dst: object                 # LongTensor: local row of each gathered edge, groups concatenated
    edge_ids: object            # LongTensor: file positions of the gathered edges, groups concatenated
    slices: list                # [(activation, start, stop)] over the level's rows


class LevelModel:
    """Any network as torch code: one index_add per level over that level's incoming edges.

    Activations are kept level by level as ``n_level × B`` tensors (rows gathered contiguously);
    each level's nodes are sorted by activation so every activation applies to one slice.
    Index preparation happens once here; ``grads`` runs forward + autograd backward.
    """

    def __init__(self, net: Network, dtype: str = "float64") -> None:
        import torch

        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.act = _activations()
        levels = np.asarray(net.levels)
        n_in = net.n_inputs
        codes = np.array([sorted(self.act).index(a) for a in net.activations], dtype=np.int64)
        vcode = np.concatenate([np.full(n_in, -1), codes])
        # order vertices by (level, activation, file position); local position within the level
        order = np.lexsort((np.arange(levels.size), vcode, levels))
        counts = np.bincount(levels)
        first = np.concatenate([[0], np.cumsum(counts)])
        local = np.empty(levels.size, dtype=np.int64)
        local[order] = np.arange(levels.size) - np.repeat(first[:-1], counts)
        src_level, dst_level = levels[net.src], levels[net.dst]
        edge_order = np.lexsort((src_level, dst_level))
        bounds = np.searchsorted(dst_level[edge_order], np.arange(counts.size + 1))
        self.levels: list[_Level] = []
        for level in range(1, counts.size):
            vertices = order[first[level]:first[level + 1]]
            eids = edge_order[bounds[level]:bounds[level + 1]]
            sl = src_level[eids]
            cuts = np.flatnonzero(np.diff(sl)) + 1
            groups = [(int(src_level[part[0]]), torch.from_numpy(local[net.src[part]]), part)
                      for part in np.split(eids, cuts) if part.size]
            vc = vcode[vertices]
            edges = np.flatnonzero(np.diff(vc)) + 1
            starts, stops = np.concatenate([[0], edges]), np.concatenate([edges, [vc.size]])
            slices = [(sorted(self.act)[vc[a]], int(a), int(b)) for a, b in zip(starts, stops)]
            self.levels.append(_Level(torch.from_numpy(vertices - n_in), [(s, i) for s, i, _ in groups],
                                      torch.from_numpy(local[net.dst[eids]]),
                                      torch.from_numpy(np.concatenate([g[2] for g in groups]) if groups
                                                       else np.zeros(0, dtype=np.int64)),
                                      slices))
        out_vertices = net.output_index + n_in
        self.out_level = levels[out_vertices]
        self.out_local = local[out_vertices]
        self.weights = torch.tensor(np.asarray(net.weights), dtype=self.dtype)
        self.biases = torch.tensor(np.asarray(net.biases), dtype=self.dtype)

    def forward(self, X: np.ndarray, w: object, b: object) -> object:
        """Outputs (B×K tensor) for inputs X, given weight and bias tensors in file order."""
        torch = self.torch
        B = X.shape[0]
        o = [X.T if torch.is_tensor(X) else torch.tensor(np.asarray(X).T, dtype=self.dtype)]  # inputs, I × B
        for lv in self.levels:
            n = lv.node_ids.numel()
            z = b[lv.node_ids].unsqueeze(1).expand(n, B)
            if lv.groups:
                gathered = torch.cat([o[s][idx] for s, idx in lv.groups]) if len(lv.groups) > 1 \
                    else o[lv.groups[0][0]][lv.groups[0][1]]
                contrib = gathered * w[lv.edge_ids].unsqueeze(1)
                z = z.index_add(0, lv.dst, contrib)
            parts = [self.act[a](z[s:e]) for a, s, e in lv.slices]
            o.append(torch.cat(parts) if len(parts) > 1 else parts[0])
        return torch.stack([o[l][p] for l, p in zip(self.out_level.tolist(), self.out_local.tolist())], dim=1)

    def _leaves(self) -> tuple[object, object]:
        return self.weights.clone().requires_grad_(True), self.biases.clone().requires_grad_(True)

    def grads(self, X: np.ndarray, T: np.ndarray) -> TorchGrads:
        """Forward + backward for mse (mean) loss; gradients in file order."""
        w, b = self._leaves()
        y = self.forward(X, w, b)
        loss = self.torch.nn.functional.mse_loss(y, self.torch.tensor(np.asarray(T), dtype=self.dtype))
        loss.backward()
        return TorchGrads(y.detach().numpy(), loss.item(), w.grad.numpy(), b.grad.numpy())

    def jacobian(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output mode by one backward pass per (example, output): outputs B×K, B×K×E, B×K×N."""
        w, b = self._leaves()
        y = self.forward(X, w, b)
        B, K = y.shape
        edge = np.empty((B, K, w.numel()))
        bias = np.empty((B, K, b.numel()))
        for i in range(B):
            for k in range(K):
                gw, gb = self.torch.autograd.grad(y[i, k], (w, b), retain_graph=True, allow_unused=True)
                edge[i, k] = 0.0 if gw is None else gw.numpy()
                bias[i, k] = 0.0 if gb is None else gb.numpy()
        return y.detach().numpy(), edge, bias


class LinearModel:
    """A layered, fully connected network as ``nn.Linear`` layers; gradients scattered to file order."""

    def __init__(self, net: Network, dtype: str = "float64") -> None:
        import torch

        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.n_edges, self.n_nodes = net.n_edges, net.n_nodes
        self.layers = dense_layers(net)
        acts = _activations()
        modules = []
        self.linears = []
        for layer in self.layers:
            lin = torch.nn.Linear(layer.W.shape[1], layer.W.shape[0], dtype=self.dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.W))
                lin.bias.copy_(torch.from_numpy(layer.b))
            modules.append(lin)
            self.linears.append(lin)
            if layer.activation == "tanh":
                modules.append(torch.nn.Tanh())
            elif layer.activation != "identity":
                modules.append(_Lambda(acts[layer.activation]))
        self.model = torch.nn.Sequential(*modules)
        out_rows = {int(v): (i, r) for i, layer in enumerate(self.layers) for r, v in enumerate(layer.nodes)}
        self.out_pick = [out_rows[int(v)] for v in net.output_index]

    def step(self, X: object, T: object) -> object:
        """One timed training step: zero grads, forward, mse loss, backward; returns the loss tensor."""
        self.model.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.mse_loss(self.model(X), T)
        loss.backward()
        return loss

    def tensors(self, X: np.ndarray, T: np.ndarray) -> tuple[object, object]:
        """X and T as torch tensors, T's columns permuted into the last layer's row order."""
        torch = self.torch
        last = len(self.layers) - 1
        if any(i != last for i, _ in self.out_pick):
            raise ValueError("every output must be in the last layer")
        T_rows = np.empty_like(np.asarray(T))
        T_rows[:, [r for _, r in self.out_pick]] = T
        return torch.tensor(np.asarray(X), dtype=self.dtype), torch.tensor(T_rows, dtype=self.dtype)

    def grads(self, X: np.ndarray, T: np.ndarray) -> TorchGrads:
        """Forward + backward for mse (mean) loss; gradients scattered back into file order."""
        Xt, Tt = self.tensors(X, T)
        loss = self.step(Xt, Tt)
        edge_grads = np.zeros(self.n_edges)
        deltas = np.zeros(self.n_nodes)
        for layer, lin in zip(self.layers, self.linears):
            edge_grads[layer.edge_ids] = lin.weight.grad.numpy()[layer.edge_rows, layer.edge_cols]
            deltas[layer.nodes] = lin.bias.grad.numpy()
        with self.torch.no_grad():
            y = self.model(Xt).numpy()
        return TorchGrads(y[:, [r for _, r in self.out_pick]], loss.item(), edge_grads, deltas)


def _Lambda(fn: Callable) -> object:
    import torch

    class Lambda(torch.nn.Module):
        def forward(self, x):  # noqa: D401 - torch API
            return fn(x)

    return Lambda()


def _functional_step(model: LevelModel, mode: str, X: np.ndarray, T: np.ndarray
                     ) -> tuple[Callable[[], object], Callable[[], np.ndarray], str]:
    """Per-example (``vmap(grad)``) or output-mode (``vmap(jacrev)``) gradients of the level model with torch.func."""
    import torch
    from torch.func import grad, jacrev, vmap

    Xt, Tt = torch.tensor(X, dtype=model.dtype), torch.tensor(T, dtype=model.dtype)
    w, b = model.weights, model.biases
    scale = 1.0 / T.size
    if mode == "per_example":
        def one(w, b, x, t):
            return torch.sum((model.forward(x[None], w, b)[0] - t) ** 2) * scale

        fn = vmap(grad(one, argnums=(0, 1)), in_dims=(None, None, 0, 0))
        return (lambda: fn(w, b, Xt, Tt)), (lambda: fn(w, b, Xt, Tt)[0].sum(0).numpy()), "vmap(grad), index_add by level"
    single = lambda w, b, x: model.forward(x[None], w, b)[0]  # noqa: E731
    fn = vmap(jacrev(single, argnums=(0, 1)), in_dims=(None, None, 0))
    return (lambda: fn(w, b, Xt)), (lambda: fn(w, b, Xt)[0].numpy()), "vmap(jacrev), index_add by level"


def _timed_step(spec: dict, batch: int, seed: int, mode: str = "loss"
                ) -> tuple[Callable[[], object], Callable[[], np.ndarray], str]:
    """(one step, edge gradients in file order, description) for ``spec``'s network in ``mode``."""
    from .networks import batch as make_batch
    from .networks import build

    net = build(spec)
    X, T = make_batch(net, batch, seed)
    if mode != "loss":
        return _functional_step(LevelModel(net), mode, X, T)
    if spec["generator"] == "mlp":
        model = LinearModel(net)
        Xt, Tt = model.tensors(X, T)
        return (lambda: model.step(Xt, Tt)), (lambda: model.grads(X, T).edge_grads), "nn.Linear + autograd"
    level_model = LevelModel(net)
    return ((lambda: level_model.grads(X, T)), (lambda: level_model.grads(X, T).edge_grads),
            "level-by-level index_add + autograd")


def serve(spec: dict, batch: int, seed: int, warmup: int, stdin: TextIO, stdout: TextIO, mode: str = "loss") -> None:
    """Answer one JSON line per command read from ``stdin``: ``run`` (time one step), ``grads PATH``.

    The first line written says ready, after ``warmup`` untimed steps. Run in a child process so
    torch's OpenMP threads never spin while numpy or edgegrad is being timed in the parent, and so
    the parent can alternate its own runs with these (paired timing under changing load).
    """
    import torch

    from .timing import serve_steps

    step, grads, kind = _timed_step(spec, batch, seed, mode)
    serve_steps(step, grads, {"kind": kind, "threads": torch.get_num_threads(), "version": torch.__version__},
                warmup, stdin, stdout)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.torch_baseline SPEC_JSON [--batch B] [--seed S]``: serve timing commands."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_baseline", description=serve.__doc__.splitlines()[0])
    p.add_argument("spec", help='network spec as JSON, e.g. {"generator": "mlp", "seed": 0}')
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the batch")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mode", choices=("loss", "per_example", "output"), default="loss")
    args = p.parse_args(argv)
    serve(json.loads(args.spec), args.batch, args.seed, args.warmup, sys.stdin, sys.stdout, args.mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
