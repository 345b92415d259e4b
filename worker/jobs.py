"""The rq job functions edgegrad's workers run (and the only ones they run)."""

from __future__ import annotations

import logging
import os

from edgegrad.api import gradients
from edgegrad.codec import array_from_tensor, result_chunks
from edgegrad.errors import EdgegradError
from edgegrad.jobrecord import error_fields, loss_fields
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2

from .store import WorkerStore

__all__ = ["run_gradient_job", "set_store", "get_store", "ALLOWED_FUNCTIONS"]

log = logging.getLogger("edgegrad.worker")

#: job functions a worker agrees to run, by rq's func_name
ALLOWED_FUNCTIONS = frozenset({"edgegrad.worker.jobs.run_gradient_job"})

_store: WorkerStore | None = None


def set_store(store: WorkerStore) -> None:
    """Use this store (and its network cache) for the jobs of this process."""
    global _store
    _store = store


def get_store() -> WorkerStore:
    """The process's store, made from the environment on first use."""
    global _store
    if _store is None:
        _store = WorkerStore(Settings.from_env(), name=f"pid-{os.getpid()}")
    return _store


def run_gradient_job(job_id: str) -> None:
    """Run one gradient job: compute, stream chunks to the job's Redis stream, record the end."""
    store = get_store()
    started = store.start(job_id)
    if started.kind == "cancel":
        store.fail(job_id, "5", error_fields("CANCELLED", "cancelled by request"))
    if started.kind != "run":
        return
    try:
        request = job_pb2.GradientRequest.FromString(started.spec)
        layout = job_pb2.ResultLayout.FromString(started.layout)
        net = store.network(request.network_hash)
        x = array_from_tensor(request.inputs, "inputs")
        t = array_from_tensor(request.targets, "targets") if request.HasField("targets") else None
        result = gradients(net, x, targets=t, loss=request.loss or None, reduction=request.reduction or "mean",
                           per_example=request.per_example, dtype=request.dtype or "float64")
        chunks = result_chunks(result, layout, layout.chunk_bytes, after_seq=started.chunks_done)
    except EdgegradError as exc:
        store.fail(job_id, "4", error_fields(exc.code, exc.message))
        return
    except Exception as exc:  # a bug or an environment problem: the job fails, the worker lives on
        log.exception("job %s failed", job_id)
        store.fail(job_id, "4", error_fields("INTERNAL", f"{type(exc).__name__}: {exc}"))
        return
    store.emit_and_finish(job_id, chunks, layout.chunk_count, loss_fields(result.loss))
