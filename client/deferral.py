"""Which submissions ``Client.submit`` may send later, in a batch, without waiting for the server's answer.

A submission is deferred only where the server's answer is foreseeable: the request was checked here as
the in-process call checks it (``prepare``), and it sits well inside every limit the server advertises
(``Capabilities``: sizes, rows, result bytes, a worker's memory, each tenant's quotas). Anything the
client cannot vouch for (an upload, an explicit ``request_id`` or ``shard_rows``, a job near a limit, a
tenant quota small enough to run out) is sent at once, so ``submit`` raises its refusal itself.
Free of I/O.
"""

from __future__ import annotations

from edgegrad.engine.memory import working_memory_bytes
from edgegrad.model.network import Network
from edgegrad.v1 import service_pb2
from edgegrad.wire.chunking import result_bytes, result_layout

from .protocol import Prepared

__all__ = ["DEFER_MAX_WORK", "QUOTA_ROOM", "may_defer"]

#: the most engine work (rows × max(edges, nodes) × outputs in output mode) of a deferred job: a small job
DEFER_MAX_WORK = 1 << 20
#: a tenant quota smaller than this many such jobs is one a loop may reach: submissions then wait for the answer
QUOTA_ROOM = 1024
#: a deferred job's batch, at most (bytes); larger ones go at once (and may need an upload)
DEFER_MAX_BATCH_BYTES = 64 << 10


def _within(value: int, limit: int, share: int = 2) -> bool:
    """Whether ``value`` is at most ``1/share`` of ``limit`` (0: no limit)."""
    return limit == 0 or value * share <= limit


def may_defer(prepared: Prepared, net: Network, caps: service_pb2.Capabilities) -> bool:
    """Whether the server will accept ``prepared`` on ``net`` whatever else it holds (bar outages); the
    caller rules out a request id of its own (one that may already name a job)."""
    if prepared.request.shard_rows or prepared.upload_progress is not None:
        return False  # explicit shards may not fit (and an explicit request id is the caller's to rule out)
    if prepared.batch_bytes > DEFER_MAX_BATCH_BYTES:
        return False
    g = prepared.request.request
    rows = int(prepared.inputs.shape[0])
    loss = g.loss or None
    work = rows * max(net.n_edges, net.n_nodes, 1) * (1 if loss else net.n_outputs)
    if rows < 1 or work > DEFER_MAX_WORK:
        return False
    if not (_within(net.n_nodes, caps.max_nodes, 1) and _within(net.n_edges, caps.max_edges, 1)
            and _within(rows, caps.max_batch, 1)):
        return False
    memory = working_memory_bytes(net.n_inputs, net.n_nodes, net.n_edges, net.n_outputs, rows, loss,
                                  g.per_example, g.dtype, widest_level=net.widest_level)
    size = result_bytes(result_layout(net, rows, loss, g.per_example, g.dtype, max(1, caps.chunk_bytes),
                                      norms=g.norms))
    return (_within(memory, caps.worker_memory_bytes) and _within(size, caps.max_result_bytes)
            and _within(QUOTA_ROOM, caps.tenant_max_jobs, 1)
            and _within(QUOTA_ROOM * size, caps.tenant_max_result_bytes, 1))
