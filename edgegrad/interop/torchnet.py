"""``Network.from_torch``: a ``torch.nn.Sequential`` of ``Linear`` layers and supported activations.

The network is the one ``from_layers`` builds from the Linear layers' weights (ids ``l{k}_{j}``,
edges in row-major order of each weight matrix), with each Linear's activation the module that
follows it (``identity`` when none does). Values are read as float64, so outputs and gradients
equal autograd's on ``module.double()``. ``Softplus`` maps only with ``beta=1``: torch returns z
itself above ``threshold`` (20), where log(1+e^z) differs from z by under 2.1e-9.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import InvalidInput
from ..model.network import Network
from . import require
from .layers import from_layers

__all__ = ["from_torch", "TORCH_ACTIVATIONS"]

#: torch module class name -> (edgegrad activation, the constructor arguments it must have)
TORCH_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "Sigmoid": ("sigmoid", {}),
    "Tanh": ("tanh", {}),
    "ReLU": ("relu", {}),
    "LeakyReLU": ("leaky_relu", {"negative_slope": 0.01}),
    "ELU": ("elu", {"alpha": 1.0}),
    "Softplus": ("softplus", {"beta": 1.0}),
    "GELU": ("gelu", {"approximate": "none"}),
    "SiLU": ("silu", {}),
}


def from_torch(module: Any) -> Network:
    """The edgegrad network computing what ``module`` (an ``nn.Sequential``) computes, in float64."""
    torch = require("torch", "torch", "Network.from_torch")
    nn = torch.nn
    if not isinstance(module, nn.Sequential):
        raise InvalidInput(f"module: expected a torch.nn.Sequential, got {type(module).__name__}")
    weights: list[Any] = []
    biases: list[Any] = []
    acts: list[str | None] = []
    for place, layer in _flat(module, "module"):
        kind = type(layer)
        if kind is nn.Linear:
            weights.append(layer.weight.detach().to("cpu", torch.float64).numpy())
            biases.append(None if layer.bias is None else layer.bias.detach().to("cpu", torch.float64).numpy())
            acts.append(None)
        elif kind is nn.Identity:
            continue
        elif kind.__module__.startswith("torch.nn") and kind.__name__ in TORCH_ACTIVATIONS:
            name, required = TORCH_ACTIVATIONS[kind.__name__]
            for attr, value in required.items():
                if getattr(layer, attr) != value:
                    raise InvalidInput(f"{place}: {kind.__name__} with {attr}={getattr(layer, attr)!r} is not"
                                       f" supported (edgegrad's {name} is {attr}={value!r})")
            if not acts:
                raise InvalidInput(f"{place}: {kind.__name__} before any Linear layer")
            if acts[-1] is not None:
                raise InvalidInput(f"{place}: {kind.__name__} right after {acts[-1]}; a Linear layer"
                                   " takes one activation")
            acts[-1] = name
        else:
            raise InvalidInput(f"{place}: unsupported layer {kind.__name__} (supported: Linear, Identity, "
                               f"{', '.join(TORCH_ACTIVATIONS)})")
    if not weights:
        raise InvalidInput("module: has no Linear layer")
    return from_layers(weights, biases, [a or "identity" for a in acts])


def _flat(module: Any, place: str) -> Iterator[tuple[str, Any]]:
    """Each leaf of a (possibly nested) Sequential with its place, e.g. ``module[2][0]``."""
    import torch

    for i, child in enumerate(module):
        if type(child) is torch.nn.Sequential:
            yield from _flat(child, f"{place}[{i}]")
        else:
            yield f"{place}[{i}]", child
