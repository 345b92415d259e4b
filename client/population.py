"""The client's side of a population job, free of I/O: the checked request, and which networks travel whole.

A network travels inline the first time this client sends it (the service registers it for the
tenant within the same call: no round trip of its own), by hash once the client knows the service has
it, and as its hash of the same topology plus new weights and biases when only those changed (a
fine-tuning step: the topology is never resent). Networks the service lost are sent inline again, once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.population_checks import Rows, check_nets, check_population
from edgegrad.errors import InvalidInput
from edgegrad.model.network import Network
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.codec import network_to_proto, tensor_from_array

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
    """Topologies whose networks this client registered: topology key -> the content hash of one such network."""

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
    """A checked population submission, its networks not yet placed (inline, by hash, or as new weights)."""

    nets: list[Network]
    base: job_pb2.PopulationRequest  #: everything but the members
    request_id: str
    shard_networks: int

    def request(self, known: Any, topologies: Topologies) -> tuple[service_pb2.SubmitJobRequest, list[str], list[str]]:
        """(the request, hashes it refers to, hashes it sends inline); ``known(hash)``: whether the service has it."""
        pop = job_pb2.PopulationRequest()
        pop.CopyFrom(self.base)
        referred: list[str] = []
        inline: list[str] = []
        sent: set[str] = set()
        for net in self.nets:
            member = pop.members.add()
            digest = net.content_hash
            if digest in sent or known(digest):  # the service has it (or gets it earlier in this request)
                member.network_hash = digest
                referred.append(digest)
                continue
            base = topologies.get(topology_key(net))
            if base is not None:  # the same topology registered: only the values travel
                member.network_hash = base
                member.weights.CopyFrom(tensor_from_array(net.weights))
                member.biases.CopyFrom(tensor_from_array(net.biases))
                referred.append(base)
                continue
            member.network_inline.CopyFrom(network_to_proto(net))
            inline.append(digest)
            sent.add(digest)
        submit = service_pb2.SubmitJobRequest(request_id=self.request_id, population=pop,
                                              shard_networks=self.shard_networks)
        return submit, referred, inline

    def remember(self, inline: Sequence[str], remember: Any, topologies: Topologies) -> None:
        """After the service took the request: its inline networks are registered."""
        wanted = set(inline)
        for net in self.nets:
            digest = net.content_hash
            if digest in wanted:
                remember(digest)
                topologies.add(topology_key(net), digest)


def prepare_population(nets: Any, inputs: Any, targets: Any, loss: str | None, reduction: str, per_example: bool,
                       dtype: str, norms: bool, clip_norm: float | None, *, outputs_only: bool = False,
                       shard_networks: int | None = None, request_id: str | None = None) -> PreparedPopulation:
    """Check a population submission as ``gradients_many`` does (the same messages)."""
    nets = check_nets(nets)
    if outputs_only and (loss is not None or per_example or norms or clip_norm is not None):
        raise InvalidInput("outputs_only: the forward pass takes no loss, per_example, norms or clip_norm")
    clip = check_clipping(loss, norms, clip_norm)
    dtype, x, t = check_population(nets, inputs, targets, loss, reduction, dtype, per_example)
    if shard_networks is not None:
        check_count("shard_networks", shard_networks, 1, UINT64_MAX, "a positive number of networks")
    base = job_pb2.PopulationRequest(loss=loss or "", reduction=reduction, per_example=bool(per_example), dtype=dtype,
                                     norms=bool(norms) or clip is not None, clip_norm=clip or 0.0,
                                     outputs_only=bool(outputs_only))
    _put_rows(base, "inputs", x)
    if t is not None:
        _put_rows(base, "targets", t)
    return PreparedPopulation(nets, base, request_id or new_request_id(), int(shard_networks or 0))


def _put_rows(pop: job_pb2.PopulationRequest, name: str, rows: Rows) -> None:
    """Shared rows into ``name``, per-network rows into ``name_each``."""
    if rows.each is None:
        getattr(pop, name).CopyFrom(tensor_from_array(rows.shared))
    else:
        getattr(pop, f"{name}_each").extend(tensor_from_array(a) for a in rows.each)
