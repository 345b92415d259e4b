"""A population request that refers to an upload (``PopulationRequest.upload``): its parts found and checked.

The upload's pieces were checked as they arrived (``edgegrad.wire.uploads``) and stay in Redis: here only
its record is matched with the networks (``edgegrad.wire.population_uploads``), so the service reads no
rows and no weights. The one part read whole is an uploaded topology (``networks``): it is checked as a
whole and stored under its content hash, as an inline one is.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf.message import DecodeError

from edgegrad.engine.batch import check_modes
from edgegrad.errors import FailedPrecondition, InvalidInput, NotFound
from edgegrad.jobs.population_store import load_topology
from edgegrad.v1 import job_pb2, network_pb2
from edgegrad.wire.columns import networks_from_proto, topology_blob
from edgegrad.wire.population_rows import has_rows, row_counts
from edgegrad.wire.population_uploads import UploadRecord

from .population_columns import Columnar, columnar_networks

if TYPE_CHECKING:
    from edgegrad.model.population import PopulationColumns

    from .service import Service

__all__ = ["open_upload", "uploaded_columns", "uploaded_rows", "uploads_rows"]

#: what a request refers to the upload by, in messages
_PLACE = "population.upload"


async def open_upload(store: Any, pop: job_pb2.PopulationRequest, rid: str) -> UploadRecord | job_pb2.Job:
    """The request's upload, its parts checked against what the request itself gives; or the job a retried
    submission already made with it."""
    try:
        record = await store.upload(pop.upload)
    except NotFound:
        if rid and (existing := await store.job_for_request(rid)):
            return await store.get_job(existing)  # a retried submit whose job used the upload
        raise NotFound(f"{_PLACE}: no upload {pop.upload!r} (unknown, already used by a job, or expired)",
                       field=_PLACE) from None
    user = record.get("job", "")
    if user:
        if rid and (existing := await store.job_for_request(rid)) == user:
            return await store.get_job(existing)
        raise FailedPrecondition(f"{_PLACE}: upload {pop.upload!r} is already used by jobs/{user} (an upload serves"
                                 " one job)", field=_PLACE)
    up = UploadRecord(pop.upload, record)
    _check_parts(up, pop)
    return up


def _check_parts(up: UploadRecord, pop: job_pb2.PopulationRequest) -> None:
    """Each part given once (in the request or in the upload), in a form that goes with the others."""
    if len(pop.members):
        raise InvalidInput(f"{_PLACE}: an upload goes with networks in columns (networks, networks_hash or the"
                           " upload's networks), not with members")
    if up.has("networks") and (pop.HasField("networks") or pop.networks_hash):
        raise InvalidInput("networks: the upload holds the networks; give neither networks nor networks_hash")
    uploaded = up.has("weights") or up.has("biases")
    if uploaded and (pop.HasField("weights") or pop.HasField("biases")):
        raise InvalidInput("weights: give the weights and biases both in the request or both in the upload")
    if uploaded and not (pop.networks_hash or up.has("networks")):
        raise InvalidInput("weights: uploaded weights and biases go with networks_hash or the upload's networks")
    if up.has("networks") and (pop.HasField("weights") or pop.HasField("biases")):
        raise InvalidInput("weights: with the upload's networks, the weights and biases go in the upload too")
    for name in ("inputs", "targets"):
        if (up.has(name) or up.has(f"{name}_packed")) and has_rows(pop, name):
            raise InvalidInput(f"{name}: given in the request and in the upload; give them once")
    if uploads_rows(up) and has_rows(pop, "targets"):
        raise InvalidInput("targets: with the inputs in the upload, the targets go in the upload too")
    if not uploads_rows(up) and (up.has("targets") or up.has("targets_packed")):
        raise InvalidInput("inputs: with the targets in the upload, the inputs go in the upload too")


def uploads_rows(up: UploadRecord | None) -> bool:
    """Whether the upload holds the population's rows."""
    return up is not None and (up.has("inputs") or up.has("inputs_packed"))


async def uploaded_columns(service: Service, store: Any, pop: job_pb2.PopulationRequest,
                           up: UploadRecord) -> Columnar:
    """The networks in columns when the upload holds their topology or their values (else as the request gives
    them): checked, values left in the upload (the Columnar's tensors are then None)."""
    if not (up.has("networks") or up.has("weights") or up.has("biases")):
        return await columnar_networks(service, store, pop)
    if up.has("networks"):
        s = service.settings
        data = await store.read_pieces(up.upload_id, "networks", up.pieces("networks"))

        def check() -> tuple[PopulationColumns, str, bytes]:
            try:
                msg = network_pb2.Networks.FromString(data)
            except DecodeError:
                raise InvalidInput("upload.networks: not a serialized edgegrad.v1.Networks message") from None
            if msg.HasField("weights") or msg.HasField("biases"):
                raise InvalidInput("upload.networks: carries weights or biases; upload them as the fields weights"
                                   " and biases")
            cols = networks_from_proto(msg, s.max_nodes, s.max_edges, values=False).topology()
            return cols, cols.content_hash(), topology_blob(cols)

        cols, digest, blob = await asyncio.to_thread(check)
    else:
        cols, digest, blob = await load_topology(store, pop.networks_hash), pop.networks_hash, None
    for name, offsets in (("weights", cols.edge_off), ("biases", cols.node_off)):
        if up.has(name):
            up.values(name, offsets)
        elif int(offsets[-1]):
            raise InvalidInput(f"{name}: missing (the upload holds no {name}: {int(offsets[-1])} values expected)")
    return Columnar(cols, digest, blob, None, None)


def uploaded_rows(up: UploadRecord, pop: job_pb2.PopulationRequest, nets: PopulationColumns, loss: str | None,
                  reduction: str, dtype: str, max_batch: int) -> tuple[str, np.ndarray]:
    """(dtype, each network's rows) of rows held by the upload, checked as ``check_population`` checks arrays."""
    dtype = check_modes(loss, reduction, dtype, pop.per_example)
    with_targets = up.has("targets") or up.has("targets_packed")
    if loss is None and with_targets:
        raise InvalidInput("targets: given without a loss (pass loss='mse', 'bce' or 'softmax_ce')")
    if loss is not None and not with_targets:
        raise InvalidInput(f"targets: loss '{loss}' needs targets (B×K of each network)")
    counts = row_counts(pop, len(nets)) if pop.HasField("row_counts") else None
    x = up.rows("inputs", nets.n_inputs_each, counts, nets.input_ids, dtype, loss, max_batch)
    if loss is None:
        return dtype, x
    t = up.rows("targets", nets.n_outputs_each, counts, nets.output_ids, dtype, loss, max_batch)
    bad = np.flatnonzero(x != t)
    if bad.size:
        p = int(bad[0])
        raise InvalidInput(f"nets[{p}]: targets: has {int(t[p])} rows but inputs has {int(x[p])}")
    return dtype, x
