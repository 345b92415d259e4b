"""Submitting a population job: many networks, one job, its shards groups of networks (no gRPC in here).

Networks come in columns (``networks``: checked as a whole, their topology stored for the tenant; or
``networks_hash``: a stored topology with new weights and biases, a fine-tuning step; see
``population_columns``; parts too large for one message come in an upload, ``population_upload``), or as
one message each (``members``): by hash (registered before by the tenant)
or inline (registered here, all in one Redis round trip), each optionally with new weights and biases
for its topology. The request is checked as ``edgegrad.gradients_many`` checks it (messages name
``nets[i]``, ``inputs[i]``) before anything is stored, so bad input makes no job.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgegrad import joblog
from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.population_checks import check_population
from edgegrad.engine.population_results import EXAMPLES, FORWARD, OUTPUTS, SUMS
from edgegrad.errors import EdgegradError, InvalidInput, NotFound, ResourceExhausted
from edgegrad.jobs.population_sharding import population_shards
from edgegrad.jobs.population_store import forget_topology, refresh_topology
from edgegrad.jobs.record import initial_fields, job_from_fields, new_job_id
from edgegrad.jobs.server_networks import NetworkMeta
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.chunking import result_bytes
from edgegrad.wire.codec import array_from_tensor
from edgegrad.wire.population import population_layout
from edgegrad.wire.population_rows import read_rows

from .population_columns import columnar_networks, uses_columns
from .population_upload import open_upload, uploaded_columns, uploaded_rows, uploads_rows

if TYPE_CHECKING:
    from .service import Service

__all__ = ["submit_population", "check_request_id", "MAX_REQUEST_ID"]

MAX_REQUEST_ID = 128
#: edges of inline networks from which they are decoded in a thread (the event loop serves others meanwhile)
_THREAD_EDGES = 10_000


def check_request_id(rid: str) -> None:
    """InvalidInput unless ``rid`` is at most MAX_REQUEST_ID printable characters."""
    if len(rid) > MAX_REQUEST_ID or not rid.isprintable():
        raise InvalidInput(f"request_id: must be at most {MAX_REQUEST_ID} printable characters")


async def submit_population(service: Service, req: service_pb2.SubmitJobRequest, tenant: str) -> job_pb2.Job:
    """Check a population request, store its networks (inline members, or an inline topology), then record and
    enqueue its shards."""
    s, pop, rid = service.settings, req.population, req.request_id
    store = service.store.for_tenant(tenant)
    check_request_id(rid)
    if req.HasField("request"):
        raise InvalidInput("request: give either request or population, not both")
    up = None
    if pop.upload:  # parts too large for one message: their pieces stay in Redis, only the record is read
        opened = await open_upload(store, pop, rid)
        if isinstance(opened, job_pb2.Job):
            return opened  # a retried submission: the job it made
        up = opened
    columnar = uses_columns(pop) or (up is not None and up.has("networks"))
    if not columnar and not pop.members:
        raise InvalidInput("nets: expected at least one network")
    loss, reduction, dtype = pop.loss or None, pop.reduction or "mean", pop.dtype or "float64"
    if pop.outputs_only and (loss or pop.per_example or pop.norms or pop.clip_norm):
        raise InvalidInput("population.outputs_only: the forward pass takes no loss, per_example, norms or clip_norm")
    with_norms = pop.norms or pop.clip_norm != 0
    if with_norms:
        check_clipping(loss, pop.norms, pop.clip_norm if pop.clip_norm != 0 else None)
    nets: Any
    fresh: list[tuple[NetworkMeta, bytes]]
    if columnar:
        found = await (uploaded_columns(service, store, pop, up) if up is not None
                       else columnar_networks(service, store, pop))
        nets, fresh = found.cols, []
        n_in, n_nodes, n_edges, n_out = (found.cols.sizes[:, i] for i in range(4))
    else:
        nets, fresh = await _networks(service, store, pop)
        n_in, n_nodes, n_edges, n_out = (np.array([getattr(m, f) for m in nets], dtype=np.int64)
                                         for f in ("n_inputs", "n_nodes", "n_edges", "n_outputs"))
    if up is not None and uploads_rows(up):
        dtype, batches = uploaded_rows(up, pop, found.cols, loss, reduction, dtype, s.max_batch)
    else:
        x = read_rows(pop, "inputs", n_in)
        t = read_rows(pop, "targets", n_out)
        _check_batch(x, s.max_batch)
        dtype, rows, _ = check_population(nets, x, t, loss, reduction, dtype, pop.per_example)
        batches = rows.counts(len(nets))
    sizes = np.stack([batches, n_out, n_edges, n_nodes], axis=1).astype(np.int64)
    mode = FORWARD if pop.outputs_only else OUTPUTS if loss is None else EXAMPLES if pop.per_example else SUMS
    itemsize = 4 if dtype == "float32" else 8
    shards = population_shards(sizes, n_in, mode, with_norms and loss is not None, itemsize, int(req.shard_networks),
                               int(req.shard_rows), s.worker_memory_bytes, s.shard_seconds, s.max_shards,
                               await service.fleet.workers())
    layout = population_layout(sizes, loss, pop.per_example, dtype, s.chunk_bytes, shards.starts,
                               s.result_buffer_bytes, norms=with_norms, outputs_only=pop.outputs_only,
                               shard_rows=shards.rows)
    size = result_bytes(layout)
    if size > s.max_result_bytes:
        raise ResourceExhausted(f"request: the population's results would take {size} bytes, over the limit of"
                                f" {s.max_result_bytes} (send fewer networks or rows, or drop per_example)")
    spec = job_pb2.PopulationRequest()
    spec.CopyFrom(pop)
    spec.ClearField("uploaded")
    if up is not None:
        spec.uploaded.extend(up.fields)   # where each uploaded part lives, for the workers
    before: list[tuple[Any, ...]] = []
    if columnar:  # checked: an inline topology is stored with the CREATE; the spec names it, with the request's values
        before = found.commands(store)
        layout.population.networks_hash = found.digest
        spec.ClearField("networks")
        spec.networks_hash = found.digest
        for name, values in (("weights", found.weights), ("biases", found.biases)):
            if values is not None:
                getattr(spec, name).CopyFrom(values)
        hashes, stored = [], (store.keys.population(found.digest), store.keys.population_owned(found.digest))
        extra, key_hash = refresh_topology(store, found.digest), found.digest
    else:
        if fresh:  # checked: register the inline networks for the tenant, all in one round trip
            await store.put_networks(fresh)
        for member, meta in zip(spec.members, nets):
            member.network_hash = meta.hash  # inline networks are stored now: the spec refers to them
        hashes, stored, extra = [m.hash for m in nets], None, []
        key_hash = hashes[0]
    blob = spec.SerializeToString(deterministic=True)
    knobs = str(int(req.shard_networks)) + (f"/{int(req.shard_rows)}" if req.shard_rows else "")
    fingerprint = hashlib.sha256(blob + knobs.encode()).hexdigest()
    job_id, now = new_job_id(), time.time()
    work = int((sizes[:, 0] * np.maximum(sizes[:, 2] + sizes[:, 3], 1)).sum())
    fields = initial_fields(job_id, rid, fingerprint, "", layout, now, now + s.job_ttl, work)
    if up is not None:  # the job owns the upload from now on: its pieces go when the job ends
        fields["upload"], fields["upload_pieces"] = store.keys.upload(up.upload_id), str(up.most_pieces)
        extra = [*extra, ("HSET", store.keys.upload(up.upload_id), "job", job_id)]
    try:
        got, created = await store.create_job(job_id, blob, fields, rid, fingerprint, key_hash, layout.shard_count,
                                              extra, size, networks=hashes, stored=stored, before=before)
    except NotFound:
        if columnar:
            forget_topology(store, key_hash)
        raise
    if columnar:
        found.stored(store)
    if created:
        joblog.job_submitted(job_id, tenant, int(sizes[:, 0].sum()), layout.shard_count, size)
        return job_from_fields({k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()})
    return await store.get_job(got)


async def _networks(service: Service, store: Any, pop: job_pb2.PopulationRequest
                    ) -> tuple[list[NetworkMeta], list[tuple[NetworkMeta, bytes]]]:
    """Each member's meta, and the inline networks checked and ready to store (meta, bytes); new weights and
    biases checked against their network's sizes."""
    inline = [(i, m.network_inline) for i, m in enumerate(pop.members) if m.WhichOneof("network") == "network_inline"]
    edges = sum(msg.src.shape[0] if msg.src.shape else 0 for _, msg in inline)

    def check_one(i: int, msg: Any) -> tuple[NetworkMeta, bytes]:
        try:
            return service.check_network(msg, f"nets[{i}]")
        except EdgegradError as exc:  # every message names the network
            if exc.message.startswith(f"nets[{i}]"):
                raise
            raise type(exc)(f"nets[{i}]: {exc.message}", field=exc.field) from None

    def check_all() -> list[tuple[NetworkMeta, bytes]]:
        return [check_one(i, msg) for i, msg in inline]

    fresh = await asyncio.to_thread(check_all) if edges > _THREAD_EDGES else check_all()
    by_index: dict[int, NetworkMeta] = {i: meta for (i, _), (meta, _) in zip(inline, fresh)}
    sent = {meta.hash: meta for meta, _ in fresh}  # a hash may name a network sent inline earlier in the request
    named = [(i, m.network_hash) for i, m in enumerate(pop.members) if m.WhichOneof("network") == "network_hash"]
    for i, content_hash in named:
        if content_hash in sent:
            by_index[i] = sent[content_hash]
    named = [(i, h) for i, h in named if h not in sent]
    for (i, content_hash), meta in zip(named, await store.network_metas([h for _, h in named])):
        if meta is None:
            raise NotFound(f"nets[{i}]: network_hash: no network {content_hash!r} is registered (or it expired);"
                           " register it first", field="network_hash")
        by_index[i] = meta
    metas = []
    for i, member in enumerate(pop.members):
        if i not in by_index:
            raise InvalidInput(f"nets[{i}]: missing (give network_hash or network_inline)")
        meta = by_index[i]
        for name, count in (("weights", meta.n_edges), ("biases", meta.n_nodes)):
            if member.HasField(name):
                _check_values(getattr(member, name), f"nets[{i}].{name}", count)
        metas.append(meta)
    return metas, fresh


def _check_values(tensor: Any, place: str, count: int) -> None:
    """New weights or biases: float64, ``count`` finite values."""
    values = array_from_tensor(tensor, place)
    if values.dtype != np.float64 or values.shape != (count,):
        raise InvalidInput(f"{place}: expected {count} float64 values (shape ({count},)), got {values.dtype.name}"
                           f" of shape {tuple(values.shape)}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InvalidInput(f"{place}[{int(bad[0])}]: expected a finite number, got {values[bad[0]]}")


def _check_batch(x: Any, limit: int) -> None:
    """ResourceExhausted for rows over the service's batch limit (per network)."""
    arrays = [x] if not isinstance(x, list) else x
    for i, a in enumerate(arrays):
        if a.ndim >= 1 and a.shape[0] > limit:
            where = "inputs" if not isinstance(x, list) else f"inputs[{i}]"
            raise ResourceExhausted(f"{where}: batch of {a.shape[0]} rows, over the limit of {limit}")
