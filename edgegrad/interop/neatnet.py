"""``Network.from_neat``: a neat-python genome as the edgegrad network neat's ``FeedForwardNetwork`` runs.

What is mapped: the genome's nodes that neat evaluates (those that feed an output) and its enabled
connections between them; ids are the genome's keys as text (inputs ``"-1"``, ``"-2"`` …, outputs
``"0"`` …, hidden nodes their own keys); computed nodes come in key order with the outputs first,
edges in order of their ``(in, out)`` keys.

neat computes a node as ``act(bias + response · Σ w·x)`` and several of its activations scale z:
its sigmoid is ``1/(1+e^(-5z))``, its tanh ``tanh(2.5z)``, its gauss ``e^(-5z²)``. edgegrad's nodes
have no response and unscaled activations, so a node with activation scale ``s`` gets bias
``s·bias`` and incoming weights ``s·response·w``: the same z up to rounding. Hence
``edgegrad.gradients(net, …)`` differentiates with respect to **those scaled values**;
``NeatMap.genome_gradients`` multiplies by the chain factors to give the derivatives with respect
to **the genome's own connection weights and node biases** (response held fixed). Where neat clamps
(sigmoid at |5z| > 60, gauss at |z| > 3.4) edgegrad does not, so values there differ by under 1e-25.

Refused, with a message naming the node: aggregations other than ``sum``; activations edgegrad
cannot follow exactly (``sin`` and ``softplus`` clamp 5z at ±60, which changes their values past
it; ``lelu`` has slope 0.005, not 0.01; ``selu``, ``clamped``, ``inv``, ``log``, ``exp``, ``hat``,
``square``, ``cube`` have no counterpart); and functions registered under a built-in name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from . import require

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.result import GradientResult

__all__ = ["NeatMap", "map_genome", "map_population", "from_neat", "NEAT_ACTIVATIONS"]

#: neat activation name -> (edgegrad activation, the factor neat applies to z first)
NEAT_ACTIVATIONS: dict[str, tuple[str, float]] = {
    "sigmoid": ("sigmoid", 5.0),
    "tanh": ("tanh", 2.5),
    "gauss": ("gauss", math.sqrt(5.0)),
    "relu": ("relu", 1.0),
    "elu": ("elu", 1.0),
    "identity": ("identity", 1.0),
    "abs": ("abs", 1.0),
}

_WHY_NOT = {
    "sin": "neat's sin is sin(clamp(5z, -60, 60)), which stops following sin past |z| = 12",
    "softplus": "neat's softplus is 0.2·log(1+e^clamp(5z, -60, 60)), which stops following it past |z| = 12",
    "lelu": "neat's lelu has slope 0.005 below 0; edgegrad's leaky_relu has 0.01",
}


@dataclass(frozen=True)
class NeatMap:
    """A genome's edgegrad network and the factors between its values and the genome's own."""

    net: Network
    connections: tuple[tuple[int, int], ...]   #: the genome connection key of each edge
    nodes: tuple[int, ...]                      #: the genome node key of each computed node
    weight_scale: np.ndarray                    #: per edge: s(dst)·response(dst)
    bias_scale: np.ndarray                      #: per node: s(node)
    genome_weights: np.ndarray                  #: per edge: the genome's connection weight
    genome_biases: np.ndarray                   #: per node: the genome's node bias

    def genome_gradients(self, result: GradientResult) -> tuple[np.ndarray, np.ndarray]:
        """``(∂/∂genome weights, ∂/∂genome biases)`` from a result of ``gradients(self.net, …)``; any mode."""
        return result.edge_grads * self.weight_scale, result.deltas * self.bias_scale

    def network(self, weights: Any = None, biases: Any = None) -> Network:
        """The network for other genome weights/biases (edge and node order as here; None keeps these)."""
        w = self.genome_weights if weights is None else np.asarray(weights, dtype=np.float64)
        b = self.genome_biases if biases is None else np.asarray(biases, dtype=np.float64)
        n = self.net
        return Network.from_arrays(n.inputs, n.outputs, n.node_ids, n.activations, b * self.bias_scale,
                                   n.src, n.dst, w * self.weight_scale)

    def write_back(self, genome: Any, weights: Any, biases: Any) -> None:
        """Set the genome's connection weights and node biases to these (edge and node order as here)."""
        for connection, w in zip(self.connections, np.asarray(weights, dtype=np.float64).tolist()):
            genome.connections[connection].weight = w
        for node, b in zip(self.nodes, np.asarray(biases, dtype=np.float64).tolist()):
            genome.nodes[node].bias = b


def from_neat(genome: Any, config: Any) -> Network:
    """The edgegrad network of a neat-python genome (see the module docstring for what maps)."""
    return map_genome(genome, config).net


def map_genome(genome: Any, config: Any) -> NeatMap:
    """The genome's network with the factors that turn its gradients into the genome's own."""
    return _Mapper(config).map(genome)


def map_population(genomes: Any, config: Any) -> list[NeatMap]:
    """The ``NeatMap`` of every genome of a generation, in order, built together (the library and the
    configuration are looked at once).

    ``genomes``: a sequence of genomes, of ``(key, genome)`` pairs as neat hands ``eval_genomes``, or
    neat's ``population`` dict (its values, in its order). A genome that cannot be mapped is refused
    naming it: ``genomes[i]: genome.nodes[k]: ...``.
    """
    items = list(genomes.values()) if isinstance(genomes, dict) else list(genomes)
    mapper = _Mapper(config)
    maps = []
    for i, item in enumerate(items):
        genome = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        try:
            maps.append(mapper.map(genome))
        except InvalidInput as exc:
            raise InvalidInput(f"genomes[{i}]: {exc}") from None
    return maps


class _Mapper:
    """What mapping genomes of one configuration needs once: neat's modules and the checked activations."""

    def __init__(self, config: Any) -> None:
        require("neat", "neat", "Network.from_neat")
        from neat import activations, aggregations
        from neat.graphs import required_for_output

        self.gc = getattr(config, "genome_config", config)
        self.required_for_output = required_for_output
        self.acts = activations
        self.sum_is_neats = self.gc.aggregation_function_defs.get("sum") is aggregations.sum_aggregation
        self.activations: dict[str, tuple[str, float]] = {}

    def activation(self, key: int, name: str) -> tuple[str, float]:
        """``_activation`` of ``name``, checked once per configuration."""
        found = self.activations.get(name)
        if found is None:
            found = self.activations[name] = _activation(key, name, self.gc, self.acts)
        return found

    def map(self, genome: Any) -> NeatMap:
        """The genome's ``NeatMap``."""
        return _map(genome, self)


def _map(genome: Any, mapper: _Mapper) -> NeatMap:
    gc, required_for_output = mapper.gc, mapper.required_for_output
    inputs, outputs = list(gc.input_keys), list(gc.output_keys)
    enabled = sorted(k for k, cg in genome.connections.items() if cg.enabled)
    required = required_for_output(inputs, outputs, enabled)
    usable = required.union(inputs)
    conns = [k for k in enabled if k[1] in required and k[0] in usable]
    nodes = outputs + sorted(required.difference(outputs))
    names, scales, biases, responses = [], [], [], []
    for key in nodes:
        ng = genome.nodes[key]
        if ng.aggregation != "sum" or not mapper.sum_is_neats:
            raise InvalidInput(f"genome.nodes[{key}]: aggregation '{ng.aggregation}' is not supported (edgegrad nodes"
                               " sum their inputs; only neat's own 'sum' maps)")
        name, scale = mapper.activation(key, ng.activation)
        names.append(name)
        scales.append(scale)
        biases.append(float(ng.bias))
        responses.append(float(ng.response))
    ids = [str(k) for k in inputs] + [str(k) for k in nodes]
    index = {k: i for i, k in enumerate(inputs + nodes)}
    src = np.array([index[a] for a, _ in conns], dtype=np.int64)
    dst = np.array([index[b] for _, b in conns], dtype=np.int64)
    node_scale = np.array(scales)
    edge_scale = (node_scale * np.array(responses))[dst - len(inputs)] if conns else np.zeros(0)
    weights = np.array([float(genome.connections[k].weight) for k in conns])
    bias_arr = np.array(biases)
    net = Network.from_arrays(ids[:len(inputs)], [str(k) for k in outputs], ids[len(inputs):], names,
                              bias_arr * node_scale, src, dst, weights * edge_scale)
    return NeatMap(net, tuple(conns), tuple(nodes), _frozen(edge_scale), _frozen(node_scale),
                   _frozen(weights), _frozen(bias_arr))


def _activation(key: int, name: str, gc: Any, neat_acts: Any) -> tuple[str, float]:
    """The edgegrad activation and z factor for neat's ``name``, or a clear refusal."""
    if name not in NEAT_ACTIVATIONS:
        why = _WHY_NOT.get(name, "edgegrad has no activation that computes it")
        raise InvalidInput(f"genome.nodes[{key}]: neat activation '{name}' is not supported ({why}); supported:"
                           f" {', '.join(NEAT_ACTIVATIONS)}")
    if gc.activation_defs.get(name) is not getattr(neat_acts, f"{name}_activation"):
        raise InvalidInput(f"genome.nodes[{key}]: activation '{name}' is a custom function registered under a"
                           " built-in name; only neat's own functions map")
    return NEAT_ACTIVATIONS[name]


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    arr.setflags(write=False)
    return arr
