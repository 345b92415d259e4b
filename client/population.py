"""The client's side of a population job, free of I/O: the checked request, its networks in columns.

The networks travel in columns (``edgegrad.v1.Networks``: a handful of tensors for all of them, no
message per network), inline the first time this client sends their topology (the service stores it
for the tenant within the same call: no round trip of its own), and as the topology's hash with every
network's weights and biases once the service has it (a fine-tuning step: the topology is never
resent). A topology the service lost is sent inline again, once. A population larger than one message
sends its topology, values and rows in an upload (``pieces``) and a request that refers to it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.population_checks import Rows, check_nets, check_population
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
    with their values; in one message, or with what does not fit it in an upload)."""

    nets: list[Network]
    base: job_pb2.PopulationRequest  #: everything but the networks and the rows
    request_id: str
    shard_networks: int
    columns: PopulationColumns                #: the networks in columns
    digest: str                               #: the content hash of their topology
    shard_rows: int = 0                       #: rows per row shard (0: the service's choice)
    inputs: Rows | None = None                #: the checked rows
    targets: Rows | None = None

    def payload_bytes(self, topologies: Topologies) -> int:
        """About the bytes of the request's networks and rows (to choose between one message and an upload)."""
        cols, digest = self.columns, self.digest
        size = cols.weights.nbytes + cols.biases.nbytes
        if topologies.get(digest) is None:
            size += 8 * (cols.sizes.size + cols.id_index.size + cols.outputs.size + cols.src.size + cols.dst.size)
            size += cols.codes.size + sum(len(i) + 2 for i in cols.id_table)
        for rows in (self.inputs, self.targets):
            size += 0 if rows is None else sum(a.nbytes for a in rows.arrays) + 8 * len(self.nets)
        return size

    def request(self, known: Any, topologies: Topologies, *, upload: str = ""
                ) -> tuple[service_pb2.SubmitJobRequest, list[str], list[str]]:
        """(the request, topology hashes it refers to, topology hashes it sends inline or uploads). The networks
        travel in columns: whole the first time, then (the service has their topology) as its hash with their
        weights and biases. ``upload``: the id of the upload of ``pieces()``, which holds the values, the rows and
        (the first time) the topology. ``known`` (whether the service has a network) is not needed by the
        columnar form."""
        cols, digest = self.columns, self.digest
        submit = service_pb2.SubmitJobRequest(request_id=self.request_id, shard_networks=self.shard_networks,
                                              shard_rows=self.shard_rows)
        pop = submit.population   # filled in place: megabytes of columns are not copied into the request after
        pop.CopyFrom(self.base)
        stored = topologies.get(digest) is not None
        if stored:   # the same topologies stored: only the values travel
            pop.networks_hash = digest
        if upload:
            pop.upload = upload
            if self.inputs is not None and self.inputs.each is not None:
                pop.row_counts.CopyFrom(tensor_from_array(self.inputs.counts(len(self.nets)).astype(np.int64)))
            elif self.targets is not None and self.targets.each is not None:
                pop.row_counts.CopyFrom(tensor_from_array(self.targets.counts(len(self.nets)).astype(np.int64)))
        else:
            if stored:
                pop.weights.CopyFrom(tensor_from_array(cols.weights, np.float64))
                pop.biases.CopyFrom(tensor_from_array(cols.biases, np.float64))
            else:
                pop.networks.CopyFrom(networks_to_proto(cols))
            for name, rows in (("inputs", self.inputs), ("targets", self.targets)):
                if rows is not None:
                    put_rows(pop, name, rows)
        referred, inline = ([digest], []) if stored else ([], [digest])
        return submit, referred, inline

    def pieces(self, topologies: Topologies, piece_bytes: int) -> Iterator[service_pb2.UploadPiece]:
        """What ``request(upload=...)`` leaves out, as UploadPieces of about ``piece_bytes`` each: the topology
        (unless the service has it), the weights and biases, the rows (shared, or packed per network)."""
        cols, digest = self.columns, self.digest
        if topologies.get(digest) is None:
            data = networks_to_proto(cols.topology()).SerializeToString()
            for a in range(0, len(data), piece_bytes):
                yield service_pb2.UploadPiece(field="networks", data=data[a:a + piece_bytes])
        flat_piece = max(1, piece_bytes // 8)
        for name, values in (("weights", cols.weights), ("biases", cols.biases)):
            yield from _flat_pieces(name, values, flat_piece)
        shared_widths = [r.of(0).shape[1] for r in (self.inputs, self.targets) if r is not None and r.each is None]
        step = max(1, piece_bytes // (8 * max([1] + shared_widths)))   # shared inputs and targets: the same rows a piece
        for name, rows in (("inputs", self.inputs), ("targets", self.targets)):
            if rows is None:
                continue
            if rows.each is None:
                shared = rows.of(0)
                for a in range(0, shared.shape[0], step):
                    yield service_pb2.UploadPiece(field=name, rows=tensor_from_array(shared[a:a + step]))
            else:
                packed = np.concatenate([np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in rows.each])
                yield from _flat_pieces(f"{name}_packed", packed, flat_piece)

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
    cols = PopulationColumns.from_networks(nets)   # the rows are checked against the columns' sizes: no loop over nets
    dtype, x, t = check_population(cols, inputs, targets, loss, reduction, dtype, per_example)
    if shard_networks is not None:
        check_count("shard_networks", shard_networks, 1, UINT64_MAX, "a positive number of networks")
    if shard_rows is not None:
        check_count("shard_rows", shard_rows, 1, UINT64_MAX, "a positive number of rows")
    base = job_pb2.PopulationRequest(loss=loss or "", reduction=reduction, per_example=bool(per_example), dtype=dtype,
                                     norms=bool(norms) or clip is not None, clip_norm=clip or 0.0,
                                     outputs_only=bool(outputs_only))
    return PreparedPopulation(nets, base, request_id or new_request_id(), int(shard_networks or 0), cols,
                              cols.content_hash(), int(shard_rows or 0), x, t)


def _flat_pieces(name: str, values: np.ndarray, size: int) -> Iterator[service_pb2.UploadPiece]:
    """A flat float64 field as pieces of ``size`` values (the last may hold fewer)."""
    for a in range(0, values.size, size):
        yield service_pb2.UploadPiece(field=name, rows=tensor_from_array(values[a:a + size].astype(np.float64)))
