"""The client's side of a population job, free of I/O: the checked request, its networks in columns.

The networks travel in columns (``edgegrad.v1.Networks``: a handful of tensors for all of them, no
message per network), inline the first time this client sends their topology (the service stores it
for the tenant within the same call: no round trip of its own), and as the topology's hash with every
network's weights and biases once the service has it (a fine-tuning step: the topology is never
resent). A topology the service lost is sent inline again, once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.population_checks import check_nets, check_population
from edgegrad.errors import InvalidInput
from edgegrad.model.network import Network
from edgegrad.model.population import PopulationColumns
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.codec import tensor_from_array
from edgegrad.wire.columns import networks_to_proto
from edgegrad.wire.population_rows import put_rows

from .protocol import UINT64_MAX, check_count, new_request_id

__all__ = ["PreparedPopulation", "prepare_population", "topology_key", "Topologies"]


def topology_key(net: Network) -> str:
    """A hash of everything of a network but its weights and biases."""
    h = hashlib.sha256(b"edgegrad.topology/v1")
    header = json.dumps([net.inputs, net.outputs, net.node_ids, net.activations], separators=(",", ":")).encode()
    h.update(len(header).to_bytes(8, "little"))
    h.update(header)
    for arr in (net.src, net.dst):
        h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
    return h.hexdigest()


class Topologies:
    """Topologies this client stored on the service: a population topology's hash (or one network's
    ``topology_key``) -> the hash a request refers to it by."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """A registered network's hash with this topology, or None."""
        with self._lock:
            return self._known.get(key)

    def add(self, key: str, content_hash: str) -> None:
        """Note that a network of this topology is registered under ``content_hash``."""
        with self._lock:
            self._known.setdefault(key, content_hash)

    def drop(self, hashes: set[str]) -> None:
        """Forget topologies registered under these hashes (the service lost them)."""
        with self._lock:
            self._known = {k: h for k, h in self._known.items() if h not in hashes}


class PreparedPopulation(NamedTuple):
    """A checked population submission, its networks in columns, not yet placed (inline, or by topology hash
    with their values)."""

    nets: list[Network]
    base: job_pb2.PopulationRequest  #: everything but the networks
    request_id: str
    shard_networks: int
    columns: PopulationColumns | None = None  #: the networks in columns
    digest: str = ""                          #: the content hash of their topology
    shard_rows: int = 0                       #: rows per row shard (0: the service's choice)

    def request(self, known: Any, topologies: Topologies) -> tuple[service_pb2.SubmitJobRequest, list[str], list[str]]:
        """(the request, topology hashes it refers to, topology hashes it sends inline). The networks travel in
        columns: whole the first time, then (the service has their topology) as its hash with their weights and
        biases. ``known`` (whether the service has a network) is not needed by the columnar form."""
        cols = self.columns if self.columns is not None else PopulationColumns.from_networks(self.nets)
        digest = self.digest or cols.content_hash()
        pop = job_pb2.PopulationRequest()
        pop.CopyFrom(self.base)
        if topologies.get(digest) is not None:   # the same topologies stored: only the values travel
            pop.networks_hash = digest
            pop.weights.CopyFrom(tensor_from_array(cols.weights, np.float64))
            pop.biases.CopyFrom(tensor_from_array(cols.biases, np.float64))
            referred, inline = [digest], []
        else:
            pop.networks.CopyFrom(networks_to_proto(cols))
            referred, inline = [], [digest]
        submit = service_pb2.SubmitJobRequest(request_id=self.request_id, population=pop,
                                              shard_networks=self.shard_networks, shard_rows=self.shard_rows)
        return submit, referred, inline

    def remember(self, inline: Sequence[str], remember: Any, topologies: Topologies) -> None:
        """After the service took the request: the topologies it got inline are stored."""
        for digest in inline:
            topologies.add(digest, digest)


def prepare_population(nets: Any, inputs: Any, targets: Any, loss: str | None, reduction: str, per_example: bool,
                       dtype: str, norms: bool, clip_norm: float | None, *, outputs_only: bool = False,
                       shard_networks: int | None = None, request_id: str | None = None,
                       shard_rows: int | None = None) -> PreparedPopulation:
    """Check a population submission as ``gradients_many`` does (the same messages), its networks put in columns."""
    nets = check_nets(nets)
    if isinstance(nets, PopulationColumns):
        raise InvalidInput("nets: expected a sequence of edgegrad.Network, got PopulationColumns")
    if outputs_only and (loss is not None or per_example or norms or clip_norm is not None):
        raise InvalidInput("outputs_only: the forward pass takes no loss, per_example, norms or clip_norm")
    clip = check_clipping(loss, norms, clip_norm)
    dtype, x, t = check_population(nets, inputs, targets, loss, reduction, dtype, per_example)
    if shard_networks is not None:
        check_count("shard_networks", shard_networks, 1, UINT64_MAX, "a positive number of networks")
    if shard_rows is not None:
        check_count("shard_rows", shard_rows, 1, UINT64_MAX, "a positive number of rows")
    base = job_pb2.PopulationRequest(loss=loss or "", reduction=reduction, per_example=bool(per_example), dtype=dtype,
                                     norms=bool(norms) or clip is not None, clip_norm=clip or 0.0,
                                     outputs_only=bool(outputs_only))
    put_rows(base, "inputs", x)
    if t is not None:
        put_rows(base, "targets", t)
    cols = PopulationColumns.from_networks(nets)
    return PreparedPopulation(nets, base, request_id or new_request_id(), int(shard_networks or 0), cols,
                              cols.content_hash(), int(shard_rows or 0))
