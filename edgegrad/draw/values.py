"""The numbers a picture shows: one per edge (its gradient) and one per computed node (its δ)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np

from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput
from edgegrad.model.network import Network

__all__ = ["Shown", "shown_values", "load_result"]


@dataclass(frozen=True)
class Shown:
    """Per-edge and per-node values with what they are, for the picture's legend."""

    edges: np.ndarray   #: E, file order
    nodes: np.ndarray   #: N, file order of computed nodes
    edge_name: str      #: e.g. "∂L/∂w"
    node_name: str      #: e.g. "δ = ∂L/∂b"


def shown_values(net: Network, result: GradientResult | None) -> Shown:
    """Gradients reduced to one number per edge and node; without a result, weights and biases.

    Loss mode gives ∂L/∂w and δ as they are (per-example rows are summed: they add up to the batch
    gradient); output mode gives the derivatives of the sum of the outputs, averaged over the batch.
    """
    if result is None:
        return Shown(np.asarray(net.weights, float), np.asarray(net.biases, float), "weight w", "bias b")
    g, d = np.asarray(result.edge_grads, float), np.asarray(result.deltas, float)
    if g.ndim == 3:  # output mode: B×K×E
        return Shown(g.sum(axis=1).mean(axis=0), d.sum(axis=1).mean(axis=0), "∂Σy/∂w (batch mean)",
                     "δ = ∂Σy/∂b (batch mean)")
    if g.ndim == 2:  # per-example loss mode: B×E
        g, d = g.sum(axis=0), d.sum(axis=0)
    return Shown(g, d, "∂L/∂w", "δ = ∂L/∂b")


def load_result(path: str, net: Network) -> GradientResult:
    """A result ``.npz`` (``edgegrad grad --out``, ``edgegrad batch --out``) checked against ``net``."""
    if not path.lower().endswith(".npz"):
        raise InvalidInput(f"--result: {path}: expected an .npz file (edgegrad grad/batch --out FILE.npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InvalidInput(f"--result: {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidInput(f"--result: {path}: not a readable .npz file ({exc})") from None
    for name in ("edge_grads", "deltas"):
        if name not in arrays:
            raise InvalidInput(f"--result: {path}: no '{name}' array (expected a result written by edgegrad)")
    g, d = arrays["edge_grads"], arrays["deltas"]
    if "edges" in arrays and arrays["edges"].shape == (net.n_edges, 2):
        if arrays["edges"].tolist() != net.edge_pairs():
            raise InvalidInput(f"--result: {path}: its edges are not this network's edges (another network?)")
    for name, values, size in (("edge_grads", g, net.n_edges), ("deltas", d, net.n_nodes)):
        if values.ndim not in (1, 2, 3) or values.shape[-1] != size or not np.issubdtype(values.dtype, np.number):
            raise InvalidInput(f"--result: {path}: {name} has shape {values.shape}, expected the network's"
                               f" {size} {'edges' if name == 'edge_grads' else 'nodes'} in the last axis")
        if not np.isfinite(values).all():
            raise InvalidInput(f"--result: {path}: {name} holds non-finite numbers")
    if g.ndim != d.ndim:
        raise InvalidInput(f"--result: {path}: edge_grads {g.shape} and deltas {d.shape} do not go together")
    loss = arrays.get("loss")
    outputs = arrays.get("outputs", np.zeros((0, net.n_outputs)))
    return GradientResult(outputs, None if loss is None else float(loss), g, d)
