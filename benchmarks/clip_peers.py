"""Peers of ``benchmarks/clip.py`` in a child process: per-example clipped gradients with torch.func
(``vmap(grad)`` then clipping) and with Opacus ghost clipping, served one timed step at a time.

Both clip the same per-example loss as edgegrad: example b's squared errors summed over its K outputs,
with the same C (``spec["clip_norm"]``), and return the clipped sum of the mean-reduced loss (s = 1/(B·K)).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

from .networks import batch as make_batch
from .networks import build

__all__ = ["serve"]


def _func_step(spec: dict, B: int, seed: int) -> tuple[Callable[[], object], Callable[[], np.ndarray], dict]:
    """torch.func: per-example gradients of the level model by ``vmap(grad)``, their norms, the clipped sum."""
    import torch
    from torch.func import grad, vmap

    from .torch_baseline import LevelModel

    net = build({k: v for k, v in spec.items() if k != "clip_norm"})
    X, T = make_batch(net, B, seed)
    model = LevelModel(net)
    Xt, Tt = torch.tensor(X, dtype=model.dtype), torch.tensor(T, dtype=model.dtype)
    w, b = model.weights, model.biases
    C, s = float(spec["clip_norm"]), 1.0 / T.size

    def one(w, b, x, t):
        return torch.sum((model.forward(x[None], w, b)[0] - t) ** 2)

    per_example = vmap(grad(one, argnums=(0, 1)), in_dims=(None, None, 0, 0))

    def step():
        gw, gb = per_example(w, b, Xt, Tt)
        norms = torch.sqrt((gw * gw).sum(1) + (gb * gb).sum(1))
        c = torch.clamp(C / norms, max=1.0)
        return s * (c @ gw), s * (c @ gb)

    def edge_grads() -> np.ndarray:  # the level model's weights are in file order already
        return step()[0].numpy()

    return step, edge_grads, {"kind": "torch.func vmap(grad) + clipping", "version": torch.__version__}


def _ghost_step(spec: dict, B: int, seed: int) -> tuple[Callable[[], object], Callable[[], np.ndarray], dict]:
    """Opacus ghost clipping on the MLP as an ``nn.Sequential`` (noise 0, loss_reduction="sum")."""
    import opacus
    import torch
    from opacus import PrivacyEngine

    from .networks import dense_layers

    net = build({k: v for k, v in spec.items() if k != "clip_norm"})
    X, T = make_batch(net, B, seed)
    layers = dense_layers(net)
    acts = {"tanh": torch.nn.Tanh, "identity": torch.nn.Identity, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
    modules: list = []
    for layer in layers:
        linear = torch.nn.Linear(layer.W.shape[1], layer.W.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.W))
            linear.bias.copy_(torch.from_numpy(layer.b))
        modules += [linear, acts[layer.activation]()]
    model = torch.nn.Sequential(*modules)
    rows = [int(np.flatnonzero(layers[-1].nodes == net.output_index[k])[0]) for k in range(net.n_outputs)]
    Xt = torch.from_numpy(X)
    Tt = torch.zeros((B, layers[-1].W.shape[0]), dtype=torch.float64)
    Tt[:, rows] = torch.from_numpy(T)

    class SquaredErrors(torch.nn.Module):
        """Each example's squared errors summed over its outputs (``reduction="none"``), or their sum."""

        reduction = "sum"

        def forward(self, y, t):
            per = ((y - t) ** 2).sum(1)
            return per if self.reduction == "none" else per.sum()

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(Xt, Tt), batch_size=B)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    private, optimizer, criterion, _ = PrivacyEngine().make_private(
        module=model, optimizer=optimizer, data_loader=loader, criterion=SquaredErrors(), noise_multiplier=0.0,
        max_grad_norm=float(spec["clip_norm"]), grad_sample_mode="ghost", loss_reduction="sum", poisson_sampling=False)

    def step():
        optimizer.zero_grad(set_to_none=True)
        criterion(private(Xt), Tt).backward()

    def edge_grads() -> np.ndarray:
        step()
        out = np.zeros(net.n_edges)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        for layer, linear in zip(layers, linears):
            out[layer.edge_ids] = linear.weight.grad.numpy()[layer.edge_rows, layer.edge_cols] / T.size
        return out

    return step, edge_grads, {"kind": "Opacus ghost clipping", "version": opacus.__version__}


def serve(spec: dict, batch: int, seed: int, warmup: int, mode: str) -> None:
    """Answer ``run`` / ``grads PATH`` commands on stdin (see ``timing.serve_steps``)."""
    import torch

    from .timing import serve_steps

    step, grads, info = (_ghost_step if mode == "ghost" else _func_step)(spec, batch, seed)
    serve_steps(step, grads, {**info, "threads": torch.get_num_threads()}, warmup, sys.stdin, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.clip_peers SPEC_JSON --mode func|ghost [--batch B] [--seed S]``."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m benchmarks.clip_peers")
    p.add_argument("spec")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mode", choices=("func", "ghost"), default="func")
    args = p.parse_args(argv)
    serve(json.loads(args.spec), args.batch, args.seed, args.warmup, args.mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
