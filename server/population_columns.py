"""A population request's networks in columns (``networks``, or ``networks_hash`` with new values): checked as
a whole, never one network message at a time.

Inline columns are decoded and checked with numpy (``edgegrad.wire.columns``; a bad network is named
``nets[i]``), and their topology is stored for the tenant under its content hash once the whole request
is checked. A fine-tuning step names a stored topology and sends every network's weights and biases in
two tensors, checked at once (a bad value named ``nets[i].weights[e]``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from edgegrad.errors import InvalidInput
from edgegrad.jobs.population_store import load_topology, topology_commands, topology_stored
from edgegrad.model.population import PopulationColumns
from edgegrad.v1 import job_pb2, tensor_pb2
from edgegrad.wire.columns import float_column, networks_from_proto, topology_blob

if TYPE_CHECKING:
    from .service import Service

__all__ = ["Columnar", "columnar_networks", "uses_columns"]

#: edges from which inline columns are checked in a thread (the event loop serves others meanwhile)
_THREAD_EDGES = 100_000


class Columnar(NamedTuple):
    """A population's networks in columns: checked columns with their values (none when they are uploaded), the
    topology's content hash, the bytes to store it under (None when it is stored already), and the values'
    tensors for the spec."""

    cols: PopulationColumns
    digest: str
    blob: bytes | None
    weights: tensor_pb2.Tensor | None  #: None: the values are in the request's upload
    biases: tensor_pb2.Tensor | None

    def commands(self, store: Any) -> list[tuple[Any, ...]]:
        """The commands storing a topology sent inline for the store's tenant (sent with the job's CREATE, once
        the whole request is checked); none when it is stored already."""
        return [] if self.blob is None else topology_commands(store, self.digest, self.blob)

    def stored(self, store: Any) -> None:
        """After the CREATE that ran ``commands()``: the topology is kept decoded for the next step."""
        if self.blob is not None:
            topology_stored(store, self.digest, self.cols.topology())


def uses_columns(pop: job_pb2.PopulationRequest) -> bool:
    """Whether the request gives its networks in columns (``networks`` or ``networks_hash``); InvalidInput when it
    mixes forms."""
    given = [name for name, present in (("members", len(pop.members) > 0), ("networks", pop.HasField("networks")),
                                        ("networks_hash", bool(pop.networks_hash))) if present]
    if len(given) > 1:
        raise InvalidInput(f"{given[1]}: give the networks as members, networks or networks_hash, one of them")
    if not pop.networks_hash and (pop.HasField("weights") or pop.HasField("biases")):
        raise InvalidInput("weights: weights and biases go with networks_hash (inline networks carry their own)")
    if given == ["members"] and (pop.HasField("inputs_packed") or pop.HasField("targets_packed")):
        raise InvalidInput("inputs_packed: packed rows go with networks in columns (networks or networks_hash);"
                           " with members give inputs_each")
    return bool(given) and given[0] != "members"


async def columnar_networks(service: Service, store: Any, pop: job_pb2.PopulationRequest) -> Columnar:
    """The request's networks in columns, checked (limits, then every rule of a network, then new values)."""
    s = service.settings
    if pop.HasField("networks"):
        msg = pop.networks
        edges = msg.src.shape[0] if msg.src.shape else 0

        def check() -> tuple[PopulationColumns, str, bytes]:
            cols = networks_from_proto(msg, s.max_nodes, s.max_edges)
            return cols, cols.content_hash(), topology_blob(cols)

        cols, digest, blob = await asyncio.to_thread(check) if edges > _THREAD_EDGES else check()
        return Columnar(cols, digest, blob, msg.weights, msg.biases)
    topology = await load_topology(store, pop.networks_hash)
    weights = _values(pop.weights if pop.HasField("weights") else None, "weights", topology.edge_off)
    biases = _values(pop.biases if pop.HasField("biases") else None, "biases", topology.node_off)
    return Columnar(topology.with_values(weights, biases), pop.networks_hash, None, pop.weights, pop.biases)


def _values(tensor: Any, name: str, offsets: np.ndarray) -> np.ndarray:
    """Every network's new weights or biases: float64, as many as the topology has, finite (else named
    ``nets[i].weights[e]``)."""
    if tensor is None:
        raise InvalidInput(f"{name}: missing (networks_hash needs every network's weights and biases)")
    values = float_column(tensor, name, int(offsets[-1]))
    if tensor.dtype != tensor_pb2.DTYPE_FLOAT64:
        raise InvalidInput(f"{name}: expected float64 values, got {values.dtype.name}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        at = int(bad[0])
        p = int(np.searchsorted(offsets, at, side="right")) - 1
        raise InvalidInput(f"nets[{p}].{name}[{at - int(offsets[p])}]: expected a finite number, got {values[at]}")
    return values
