"""What the service does, as plain async functions over the job store (no gRPC in here)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import AsyncIterator

from edgegrad import __version__
from edgegrad.activations import ACTIVATION_NAMES
from edgegrad.batch import DTYPES, check_options
from edgegrad.codec import array_from_tensor, network_from_proto, result_bytes, result_layout
from edgegrad.errors import InvalidInput, NotFound, OutOfRange, ResourceExhausted, Unavailable
from edgegrad.jobrecord import initial_fields, job_from_fields, job_id_from_name, new_job_id
from edgegrad.jobstore import JobStore, NetworkMeta
from edgegrad.losses import LOSSES, REDUCTIONS
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2, network_pb2, service_pb2

__all__ = ["Service"]

_MAX_REQUEST_ID = 128


class Service:
    """The gradient service: validation, submission, watching; the servicer is a thin shell."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.stopping = asyncio.Event()  #: set on shutdown: open watches end with UNAVAILABLE

    def capabilities(self) -> service_pb2.Capabilities:
        """Limits and names this server accepts."""
        s = self.settings
        return service_pb2.Capabilities(
            version=__version__, max_nodes=s.max_nodes, max_edges=s.max_edges, max_batch=s.max_batch,
            max_message_bytes=s.max_message_bytes, chunk_bytes=s.chunk_bytes, max_result_bytes=s.max_result_bytes,
            activations=ACTIVATION_NAMES, losses=list(LOSSES), reductions=list(REDUCTIONS), dtypes=list(DTYPES),
            result_ttl_seconds=s.result_ttl, network_ttl_seconds=s.network_ttl,
            heartbeat_ms=int(s.heartbeat_seconds * 1000))

    # ------------------------------------------------------------ networks
    async def register_network(self, msg: network_pb2.Network, place: str = "network") -> NetworkMeta:
        """Validate a network (limits first) and store it under its content hash."""
        s = self.settings
        if len(msg.node_ids) > s.max_nodes:
            raise ResourceExhausted(f"{place}.node_ids: {len(msg.node_ids)} nodes, over the limit of {s.max_nodes}")
        edges = msg.src.shape[0] if msg.src.shape else 0
        if edges > s.max_edges:
            raise ResourceExhausted(f"{place}.src: {edges} edges, over the limit of {s.max_edges}")
        net = await asyncio.to_thread(network_from_proto, msg, place) if edges > 10_000 \
            else network_from_proto(msg, place)
        meta = NetworkMeta(net.content_hash, list(net.inputs), list(net.outputs), net.n_nodes, net.n_edges)
        await self.store.put_network(meta, msg.SerializeToString())
        return meta

    async def network_info(self, content_hash: str) -> network_pb2.NetworkInfo:
        """NetworkInfo of a registered network; NotFound otherwise."""
        if not content_hash:
            raise InvalidInput("hash: missing")
        return (await self.store.network_meta(content_hash, fresh=True)).info()

    # ----------------------------------------------------------------- jobs
    async def submit(self, req: service_pb2.SubmitJobRequest) -> job_pb2.Job:
        """Validate a request like the in-process call would, then record and enqueue it."""
        s, r = self.settings, req.request
        rid = req.request_id
        if len(rid) > _MAX_REQUEST_ID or not rid.isprintable():
            raise InvalidInput(f"request_id: must be at most {_MAX_REQUEST_ID} printable characters")
        which = r.WhichOneof("network")
        if which == "network_inline":
            meta = await self.register_network(r.network_inline, "request.network_inline")
        elif which == "network_hash":
            meta = await self.store.network_meta(r.network_hash)
        else:
            raise InvalidInput("request.network: missing (give network_hash or network_inline)")
        if not r.HasField("inputs"):
            raise InvalidInput("inputs: missing")
        x = array_from_tensor(r.inputs, "inputs")
        t = array_from_tensor(r.targets, "targets") if r.HasField("targets") else None
        if x.ndim >= 1 and x.shape[0] > s.max_batch:
            raise ResourceExhausted(f"inputs: batch of {x.shape[0]} rows, over the limit of {s.max_batch}")
        loss = r.loss or None
        check_options(meta, x, t, loss, r.reduction or "mean", r.dtype or "float64", r.per_example)
        layout = result_layout(meta, int(x.shape[0]), loss, r.per_example, r.dtype or "float64", s.chunk_bytes)
        if result_bytes(layout) > s.max_result_bytes:
            raise ResourceExhausted(f"request: the result would take {result_bytes(layout)} bytes, over the limit"
                                    f" of {s.max_result_bytes} (use a loss, or a smaller batch)")
        spec = job_pb2.GradientRequest()
        spec.CopyFrom(r)
        spec.network_hash = meta.hash
        blob = spec.SerializeToString(deterministic=True)
        fingerprint = hashlib.sha256(blob).hexdigest()
        job_id, now = new_job_id(), time.time()
        work = int(x.shape[0]) * max(meta.n_edges, meta.n_nodes, 1) * (1 if loss else meta.n_outputs)
        fields = initial_fields(job_id, rid, fingerprint, meta.hash, layout, now, now + s.job_ttl, work)
        got, created = await self.store.create_job(job_id, blob, fields, rid, fingerprint, meta.hash)
        if created:
            return job_from_fields({k.encode(): v if isinstance(v, bytes) else str(v).encode()
                                    for k, v in fields.items()})
        return await self.store.get_job(got)

    async def get(self, name: str) -> job_pb2.Job:
        """The job named ``name``."""
        return await self.store.get_job(job_id_from_name(name))

    async def list(self, page_size: int, page_token: str) -> service_pb2.ListJobsResponse:
        """One page of jobs, newest first."""
        if page_token:
            job_id_from_name(f"jobs/{page_token}", "page_token")
        size = min(page_size or 100, 1000)
        jobs, token = await self.store.list_jobs(size, page_token)
        return service_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def cancel(self, name: str) -> job_pb2.Job:
        """Cancel a job (queued: at once; running: between chunks); final jobs stay as they are."""
        return await self.store.cancel_job(job_id_from_name(name))

    async def delete(self, name: str) -> None:
        """Delete a job and its result."""
        await self.store.delete_job(job_id_from_name(name))

    async def watch(self, name: str, after_seq: int, first: job_pb2.Job | None = None
                    ) -> AsyncIterator[job_pb2.JobEvent | bytes]:
        """State, then chunks after ``after_seq`` (serialized JobEvents), heartbeats, then the final job."""
        job_id = job_id_from_name(name)
        store = self.store
        current = first or await store.get_job(job_id)
        if after_seq > current.layout.chunk_count:
            raise OutOfRange(f"after_seq: {after_seq} is past the job's last chunk ({current.layout.chunk_count})",
                             field="after_seq")
        yield job_pb2.JobEvent(state=current)
        last = f"{int(after_seq)}-0"
        block_ms = max(1, int(self.settings.heartbeat_seconds * 1000))
        while True:
            entries = await self._read(job_id, last, block_ms)
            if not entries:
                state = await store.job_state(job_id)
                if state is None:
                    raise NotFound(f"name: job {name} was deleted or expired", field="name")
                yield job_pb2.JobEvent(heartbeat=job_pb2.Heartbeat(
                    state=state[0], chunks_done=state[1], time=_now()))
                continue
            for entry_id, fields in entries:
                last = entry_id.decode()
                kind = fields.get(b"k")
                if kind == b"c":
                    yield fields[b"d"]
                elif kind == b"s":
                    yield job_pb2.JobEvent(state=job_from_fields(fields))
                elif kind == b"d":
                    yield job_pb2.JobEvent(done=job_from_fields(fields))
                    return

    async def _read(self, job_id: str, last: str, block_ms: int) -> list:
        """One blocking read of the job's stream that ends early on shutdown or when the caller goes."""
        if self.stopping.is_set():
            raise Unavailable("server is shutting down; watch again with after_seq to resume")
        read = asyncio.ensure_future(self.store.read_events(job_id, last, block_ms))
        stop = asyncio.ensure_future(self.stopping.wait())
        answered = False
        try:
            await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
            answered = read.done()
        finally:  # also when this watch is cancelled (client gone): no read is left behind
            stop.cancel()
            if not read.done():
                read.cancel()
                read.add_done_callback(_retrieve)
        if not answered:
            raise Unavailable("server is shutting down; watch again with after_seq to resume")
        return read.result()


def _retrieve(task: asyncio.Future) -> None:
    """Mark a cancelled read's outcome as seen (its connection error on shutdown is expected)."""
    if not task.cancelled():
        task.exception()


def _now():
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.GetCurrentTime()
    return ts

