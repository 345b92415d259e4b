"""What the service does, as plain async functions over the job store (no gRPC in here)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from edgegrad import __version__, joblog, metrics
from edgegrad.engine.batch import DTYPES, check_options
from edgegrad.engine.clipping import check_clipping
from edgegrad.engine.losses import LOSSES, REDUCTIONS
from edgegrad.errors import EdgegradError, FailedPrecondition, InvalidInput, NotFound, ResourceExhausted, Unavailable
from edgegrad.jobs.lanes import lane_of
from edgegrad.jobs.record import initial_fields, job_from_fields, job_id_from_name, new_job_id
from edgegrad.jobs.server_networks import NetworkMeta
from edgegrad.jobs.server_store import JobStore
from edgegrad.jobs.sharding import shard_rows_for
from edgegrad.jobs.stream import CHUNK, DONE, STATE, StreamCursor, StreamEntry, acked_chunks, check_after_seq
from edgegrad.model.activations import ACTIVATION_NAMES
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2, network_pb2, service_pb2, tensor_pb2
from edgegrad.wire.chunking import result_bytes, result_layout
from edgegrad.wire.codec import array_from_tensor, network_from_proto
from edgegrad.wire.framing import chunk_event
from edgegrad.wire.uploads import BYTE_FIELDS, ROW_FIELDS, UploadChecker, check_upload, pieces_of

from .fleet import Fleet
from .population import check_request_id, submit_population
from .status import SERVICE_ERRORS, as_edgegrad_error, rich_status

__all__ = ["Service"]

log = logging.getLogger("edgegrad.server")
T = TypeVar("T")

_MAX_SUBMIT_MANY = 10_000


class Service:
    """The gradient service: validation, submission, watching; the servicer is a thin shell."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.stopping = asyncio.Event()  #: set on shutdown: open watches end with UNAVAILABLE
        self.fleet = Fleet(store, settings.queue)  #: how many workers take this queue's shards

    def capabilities(self) -> service_pb2.Capabilities:
        """Limits and names this server accepts."""
        s = self.settings
        return service_pb2.Capabilities(
            version=__version__, max_nodes=s.max_nodes, max_edges=s.max_edges, max_batch=s.max_batch,
            max_message_bytes=s.max_message_bytes, chunk_bytes=s.chunk_bytes, max_result_bytes=s.max_result_bytes,
            activations=ACTIVATION_NAMES, losses=list(LOSSES), reductions=list(REDUCTIONS), dtypes=list(DTYPES),
            result_ttl_seconds=s.result_ttl, network_ttl_seconds=s.network_ttl,
            heartbeat_ms=int(s.heartbeat_seconds * 1000), result_buffer_bytes=s.result_buffer_bytes,
            worker_memory_bytes=s.worker_memory_bytes, tenant_max_jobs=s.tenant_max_jobs,
            tenant_max_result_bytes=s.tenant_max_result_bytes)

    # ------------------------------------------------------------ networks
    async def register_network(self, msg: network_pb2.Network, tenant: str, place: str = "network") -> NetworkMeta:
        """Validate a network (limits first) and store it under its content hash, registered by ``tenant``."""
        edges = msg.src.shape[0] if msg.src.shape else 0
        meta, blob = await asyncio.to_thread(self.check_network, msg, place) if edges > 10_000 \
            else self.check_network(msg, place)
        await self.store.for_tenant(tenant).put_network(meta, blob)
        return meta

    def check_network(self, msg: network_pb2.Network, place: str = "network") -> tuple[NetworkMeta, bytes]:
        """A network message checked (limits first, then fully decoded): its meta and the bytes to store."""
        s = self.settings
        if len(msg.node_ids) > s.max_nodes:
            raise ResourceExhausted(f"{place}.node_ids: {len(msg.node_ids)} nodes, over the limit of {s.max_nodes}")
        edges = msg.src.shape[0] if msg.src.shape else 0
        if edges > s.max_edges:
            raise ResourceExhausted(f"{place}.src: {edges} edges, over the limit of {s.max_edges}")
        net = network_from_proto(msg, place)
        widest = int(np.bincount(np.asarray(net.levels)[net.n_inputs:]).max()) if net.n_nodes else 0
        meta = NetworkMeta(net.content_hash, list(net.inputs), list(net.outputs), net.n_nodes, net.n_edges, widest)
        return meta, msg.SerializeToString()

    async def network_info(self, content_hash: str, tenant: str) -> network_pb2.NetworkInfo:
        """NetworkInfo of a network ``tenant`` registered; NotFound otherwise."""
        if not content_hash:
            raise InvalidInput("hash: missing")
        return (await self.store.for_tenant(tenant).network_meta(content_hash, fresh=True)).info()

    # ----------------------------------------------------------------- jobs
    async def submit(self, req: service_pb2.SubmitJobRequest, tenant: str) -> job_pb2.Job:
        """Validate a request like the in-process call would, then record and enqueue its shards for ``tenant``."""
        if req.HasField("population"):
            return await submit_population(self, req, tenant)
        s, r = self.settings, req.request
        store = self.store.for_tenant(tenant)
        rid = req.request_id
        check_request_id(rid)
        which = r.WhichOneof("network")
        if which == "network_inline":
            meta = await self.register_network(r.network_inline, tenant, "request.network_inline")
        elif which == "network_hash":
            meta = await store.network_meta(r.network_hash)
        else:
            raise InvalidInput("request.network: missing (give network_hash or network_inline)")
        loss, reduction, dtype = r.loss or None, r.reduction or "mean", r.dtype or "float64"
        with_norms = r.norms or r.clip_norm != 0                # clipping reports each example's norm too
        if with_norms:
            check_clipping(loss, r.norms, r.clip_norm if r.clip_norm != 0 else None)
        job_id = new_job_id()
        pieces, upload_key, x, t = None, "", None, None
        if r.upload:
            if r.HasField("inputs") or r.HasField("targets"):
                raise InvalidInput("request.upload: give the batch either inline (inputs, targets) or as an upload")
            try:
                record = await store.upload(r.upload)
            except NotFound:
                if rid and (existing := await store.job_for_request(rid)):
                    return await store.get_job(existing)  # a retried submit whose job used the upload
                raise
            user = record.get("job", "")
            if user and user != job_id:
                if rid and (existing := await store.job_for_request(rid)) == user:
                    return await store.get_job(existing)
                raise FailedPrecondition(f"request.upload: upload {r.upload!r} is already used by jobs/{user}"
                                         " (an upload serves one job)", field="request.upload")
            pieces = check_upload(meta, record, r.upload, loss, reduction, dtype, r.per_example)
            batch, upload_key = int(pieces.rows), store.keys.upload(r.upload)
        else:
            if not r.HasField("inputs"):
                raise InvalidInput("inputs: missing")
            x = array_from_tensor(r.inputs, "inputs")
            t = array_from_tensor(r.targets, "targets") if r.HasField("targets") else None
            if x.ndim >= 1 and x.shape[0] > s.max_batch:
                raise ResourceExhausted(f"inputs: batch of {x.shape[0]} rows, over the limit of {s.max_batch}")
            x, t = check_options(meta, x, t, loss, reduction, dtype, r.per_example)
            batch = int(x.shape[0])
        if batch > s.max_batch:
            raise ResourceExhausted(f"inputs: batch of {batch} rows, over the limit of {s.max_batch}")
        shard_rows = shard_rows_for(meta, batch, loss, r.per_example, dtype, int(req.shard_rows),
                                    s.worker_memory_bytes, s.shard_seconds, s.max_shards)
        layout = result_layout(meta, batch, loss, r.per_example, dtype, s.chunk_bytes, shard_rows,
                               s.result_buffer_bytes, norms=with_norms)
        size = result_bytes(layout)
        if size > s.max_result_bytes:
            raise ResourceExhausted(f"request: the result would take {size} bytes, over the limit"
                                    f" of {s.max_result_bytes} ({_smaller_result(loss, r.per_example)})")
        spec = job_pb2.GradientRequest()
        spec.CopyFrom(r)
        spec.network_hash = meta.hash
        fingerprint = hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()
        extra: list[tuple] = []
        if x is not None and layout.shard_count > 1:  # each shard reads its own rows, not the whole batch
            spec.ClearField("inputs")
            spec.ClearField("targets")
            spec.upload = job_id
            upload_key = store.keys.upload(job_id)
            pieces = job_pb2.BatchPieces(upload=job_id, rows=batch, piece_rows=shard_rows, dtype=tensor_pb2.DTYPE_FLOAT64,
                                         input_columns=meta.n_inputs, target_columns=meta.n_outputs if loss else 0)
            for name, values in (("inputs", x), ("targets", t)):
                if values is not None:
                    extra += [("SET", store.keys.piece(job_id, name, i), data, "EX", s.job_ttl)
                              for i, data in enumerate(pieces_of(values, shard_rows))]
        blob = spec.SerializeToString(deterministic=True)
        now = time.time()
        work = batch * max(meta.n_edges, meta.n_nodes, 1) * (1 if loss else meta.n_outputs)
        fields = initial_fields(job_id, rid, fingerprint, meta.hash, layout, now, now + s.job_ttl, work,
                                pieces, upload_key)
        if r.upload:  # the job owns its upload from now on: its pieces go when the job ends
            extra.append(("HSET", upload_key, "job", job_id))
        lane = None if pieces is not None else lane_of(spec, work, layout.shard_count, s)
        got, created = await store.create_job(job_id, blob, fields, rid, fingerprint, meta.hash,
                                              layout.shard_count, extra, size, lane=lane)
        if created:
            joblog.job_submitted(job_id, tenant, batch, layout.shard_count, size)
            return job_from_fields({k.encode(): v if isinstance(v, bytes) else str(v).encode()
                                    for k, v in fields.items()})
        return await store.get_job(got)

    async def submit_many(self, req: service_pb2.SubmitJobsRequest, tenant: str) -> service_pb2.SubmitJobsResponse:
        """Submit each request on its own (concurrently); a refused one gets its status, the rest their jobs."""
        if len(req.requests) > _MAX_SUBMIT_MANY:
            raise InvalidInput(f"requests: {len(req.requests)} requests, over the limit of {_MAX_SUBMIT_MANY} a call")

        async def one(item: service_pb2.SubmitJobRequest) -> service_pb2.SubmitJobResult:
            try:
                job = await self.submit(item, tenant)
            except SERVICE_ERRORS as exc:
                return service_pb2.SubmitJobResult(error=rich_status(as_edgegrad_error(exc)))
            except Exception as exc:  # a bug must not take the other items (already created) with it
                log.exception("SubmitJobs item failed")
                return service_pb2.SubmitJobResult(error=rich_status(EdgegradError(f"{type(exc).__name__}: {exc}")))
            job.ClearField("shards")  # GetJob lists them; the reply stays small however many shards
            return service_pb2.SubmitJobResult(job=job)

        # the items that carry their network first: a later item may refer to one of those networks by hash
        first = [i for i, item in enumerate(req.requests) if item.request.HasField("network_inline")]
        rest = [i for i, item in enumerate(req.requests) if not item.request.HasField("network_inline")]
        results: dict[int, service_pb2.SubmitJobResult] = {}
        for part in (first, rest):
            results.update(zip(part, await asyncio.gather(*(one(req.requests[i]) for i in part))))
        return service_pb2.SubmitJobsResponse(results=[results[i] for i in range(len(req.requests))])

    async def upload(self, pieces: AsyncIterator[service_pb2.UploadPiece], tenant: str) -> service_pb2.Upload:
        """Store a batch sent in pieces for ``tenant``, checking each as it arrives (never the whole batch in memory)."""
        upload_id, checker = new_job_id(), UploadChecker()
        store = self.store.for_tenant(tenant)
        limit, most = self.settings.max_batch, self.settings.max_upload_bytes
        try:
            async for piece in pieces:
                name = piece.field or "inputs"
                if name in BYTE_FIELDS or piece.data:
                    index, data = checker.add_bytes(name, piece.data)
                else:
                    index, data = checker.add(name, array_from_tensor(piece.rows, f"upload.{name}.rows"))
                if name in ROW_FIELDS and checker.fields[name].rows > limit:
                    raise ResourceExhausted(f"{name}: batch of more than {limit} rows, over the limit of {limit}")
                if checker.stored_bytes > most:
                    raise ResourceExhausted(f"upload: more than {most} bytes, over the limit of {most}"
                                            " (EDGEGRAD_MAX_UPLOAD_BYTES)")
                await store.put_piece(upload_id, name, index, data)
            record = checker.record()
            await store.put_upload(upload_id, record)
        except BaseException:  # refused or cut off: nothing of it stays behind
            await asyncio.shield(store.drop_pieces(upload_id, {n: f.pieces for n, f in checker.fields.items()}))
            raise
        expire = Timestamp()
        expire.FromSeconds(int(time.time()) + self.settings.job_ttl)
        return service_pb2.Upload(id=upload_id, rows=int(record["inputs_rows"]), target_rows=int(record["targets_rows"]),
                                  piece_rows=checker.piece_rows, expire_time=expire)

    async def ack(self, name: str, seq: int, tenant: str) -> None:
        """The client holds the job's chunks up to ``seq``: drop them from Redis."""
        await self.store.for_tenant(tenant).ack_job(job_id_from_name(name), seq)

    async def get(self, name: str, tenant: str) -> job_pb2.Job:
        """The job named ``name`` of ``tenant``."""
        return await self.store.for_tenant(tenant).get_job(job_id_from_name(name))

    async def list(self, page_size: int, page_token: str, tenant: str) -> service_pb2.ListJobsResponse:
        """One page of the tenant's jobs, newest first."""
        if page_token:
            job_id_from_name(f"jobs/{page_token}", "page_token")
        size = min(page_size or self.settings.page_size, self.settings.max_page_size)
        jobs, token = await self.store.for_tenant(tenant).list_jobs(size, page_token)
        return service_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def cancel(self, name: str, tenant: str) -> job_pb2.Job:
        """Cancel a job (queued: at once; running: between chunks); final jobs stay as they are."""
        return await self.store.for_tenant(tenant).cancel_job(job_id_from_name(name))

    async def delete(self, name: str, tenant: str) -> None:
        """Delete a job and its result."""
        await self.store.for_tenant(tenant).delete_job(job_id_from_name(name))

    async def watch(self, name: str, after_seq: int, tenant: str, first: job_pb2.Job | None = None
                    ) -> AsyncIterator[job_pb2.JobEvent | bytes]:
        """State, then chunks after ``after_seq`` (serialized JobEvents), heartbeats, then the final job."""
        job_id = job_id_from_name(name)
        store = self.store.for_tenant(tenant)
        acked = 0
        if first is None:
            fields = await store.job_fields(job_id)
            current, acked = job_from_fields(fields), acked_chunks(fields)
        else:
            current = first
        check_after_seq(current, acked, after_seq)
        yield job_pb2.JobEvent(state=current)
        cursor = StreamCursor(after_seq)
        block_ms = max(1, int(self.settings.heartbeat_seconds * 1000))

        async def batch(after: str) -> list[StreamEntry]:
            """The entries after ``after``, with their chunks' data."""
            return await store.with_chunk_data(job_id, await store.read_events(job_id, after, block_ms))

        ahead: asyncio.Future | None = None  # the next batch, read while this one is sent
        try:
            while True:
                pending, ahead = ahead if ahead is not None else batch(cursor.last), None
                entries = await self.until_stopping(pending)
                if not entries:
                    state = await store.job_state(job_id)
                    if state is None:
                        raise NotFound(f"name: job {name} was deleted or expired", field="name")
                    yield job_pb2.JobEvent(heartbeat=job_pb2.Heartbeat(
                        state=state[0], chunks_done=state[1], time=_now()))
                    continue
                if _read_ahead(entries):
                    ahead = asyncio.ensure_future(batch(entries[-1].id))
                for entry in entries:
                    if entry.kind != CHUNK:
                        cursor.take(entry)
                        if entry.kind == STATE:
                            yield job_pb2.JobEvent(state=entry.job())
                        elif entry.kind == DONE:
                            yield job_pb2.JobEvent(done=entry.job())
                            return
                        continue
                    if entry.data is None:  # its key went: acknowledged (by another reader), or the job deleted
                        raise await store.lost_chunk(job_id, cursor, entry.seq)
                    cursor.take(entry)  # OutOfRange after a gap: the consumer's acknowledgements dropped chunks
                    metrics.RESULT_BYTES_STREAMED.inc(len(entry.data))
                    yield chunk_event(entry.seq, entry.data)
        finally:
            if ahead is not None:  # the watch ended (or its client went) with a batch still being read
                ahead.cancel()
                ahead.add_done_callback(_retrieve)

    async def until_stopping(self, read: Awaitable[T]) -> T:
        """What ``read`` (a read, or one already under way) answers, unless the server shuts down first
        (Unavailable: a watch resumes elsewhere).

        Also when the caller is cancelled (client gone), no read is left behind."""
        task = asyncio.ensure_future(read)
        if self.stopping.is_set():
            task.cancel()
            task.add_done_callback(_retrieve)
            raise Unavailable("server is shutting down; watch again with after_seq to resume")
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
        if not task.done() or task.cancelled():
            raise Unavailable("server is shutting down; watch again with after_seq to resume")
        return task.result()


#: a watch reads the next batch of its job's stream while it sends one of at most this many bytes of chunks (the
#: worker's next chunks come out of Redis while these go out on gRPC; a watch holds at most two batches)
READ_AHEAD_BYTES = 8 << 20


def _read_ahead(entries: list[StreamEntry]) -> bool:
    """Whether to read the next batch while sending ``entries``: chunks of at most READ_AHEAD_BYTES, not the end."""
    if entries[-1].kind == DONE or not any(e.kind == CHUNK for e in entries):
        return False
    return sum(len(e.data) for e in entries if e.data is not None) <= READ_AHEAD_BYTES


def _retrieve(task: asyncio.Future) -> None:
    """Mark a cancelled read's outcome as seen (its connection error on shutdown is expected)."""
    if not task.cancelled():
        task.exception()


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def _smaller_result(loss: str | None, per_example: bool) -> str:
    """What makes a result that is over the size limit smaller, in this request's mode."""
    if not loss:  # output mode: B×K×E derivatives
        return "use a loss for one gradient of the batch, or send a smaller batch"
    if per_example:  # B×E rows
        return ("drop per_example (--per-example) for the batch's summed gradient (norms or clip_norm,"
                " --norms/--clip-norm, give each example's gradient norm or the clipped sum without the rows),"
                " or send a smaller batch")
    return "send a smaller batch"
