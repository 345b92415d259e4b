"""Helpers shared by the service tests (networks, requests, stream collection)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

import edgegrad
from edgegrad.jobs.sharding import shard_rows_for
from edgegrad.settings import Settings
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire import chunking, codec


def example_network(n_inputs: int = 3, n_nodes: int = 12, n_outputs: int = 2, density: float = 0.5,
                    seed: int = 0) -> edgegrad.Network:
    """A random layered DAG with mixed activations."""
    rng = np.random.default_rng(seed)
    acts = ["sigmoid", "tanh", "relu", "identity", "gelu", "softplus", "sin", "elu"]
    n_vertices = n_inputs + n_nodes
    src, dst = [], []
    for v in range(n_inputs, n_vertices):
        for u in range(v):
            if rng.random() < density:
                src.append(u)
                dst.append(v)
    return edgegrad.Network.from_arrays(
        [f"x{i}" for i in range(n_inputs)], [f"n{n_nodes - 1 - k}" for k in range(n_outputs)],
        [f"n{i}" for i in range(n_nodes)], [acts[i % len(acts)] for i in range(n_nodes)],
        rng.normal(size=n_nodes) * 0.1, src, dst, rng.normal(size=len(src)) * 0.5)


def is_small(net: edgegrad.Network, batch: int, *, loss: str | None = None, per_example: bool = False,
             dtype: str = "float64", shard_rows: int | None = None, upload: bool = False,
             settings: Settings | None = None) -> bool:
    """Whether the server takes such a job as small (run with others by ``gradients_many``): server.service's
    submit and jobs.lanes.lane_of, from the same sizing function and ``settings`` (default ``Settings()``)."""
    s = settings or Settings()
    rows = shard_rows_for(net, batch, loss, per_example, dtype, int(shard_rows or 0), s.worker_memory_bytes,
                          s.shard_seconds, s.max_shards)
    shards = -(-batch // rows) if rows else 0
    work = batch * max(net.n_edges, net.n_nodes, 1) * (1 if loss else net.n_outputs)
    return s.batch_max_jobs > 1 and shards == 1 and work <= s.batch_max_work and not upload


def served(net: edgegrad.Network, x, targets=None, *, shard_rows: int | None = None, upload: bool = False,
           settings: Settings | None = None, **kwargs) -> edgegrad.GradientResult:
    """What the service computes for this job, in process: ``gradients_many([net], ...)[0]`` for a small job
    (workers run small jobs together), ``edgegrad.gradients`` for any other; equal to the service's result
    bit for bit."""
    x = np.asarray(x, dtype=np.float64)
    if is_small(net, int(x.shape[0]), loss=kwargs.get("loss"), per_example=kwargs.get("per_example", False),
                dtype=kwargs.get("dtype", "float64"), shard_rows=shard_rows, upload=upload, settings=settings):
        many_targets = None if targets is None else [np.asarray(targets, dtype=np.float64)]
        return edgegrad.gradients_many([net], [x], many_targets, **kwargs)[0]
    return edgegrad.gradients(net, x, targets, **kwargs)


def assert_json_close(got, want, rtol: float = 1e-12, where: str = "result") -> None:
    """Parsed JSON ``got`` like ``want``: the same keys, lengths, strings and nulls, and numbers within ``rtol``
    (of each number, or of the largest of its array: a value that cancels to about zero may differ by ulps of the
    array's scale). For a result of the other engine, which agrees to about 1e-16 but not always to the bit."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for key, value in want.items():
            assert_json_close(got[key], value, rtol, f"{where}.{key}")
    elif _numeric(want):
        assert _numeric(got), f"{where}: {got!r} is not numbers like {want!r}"
        w, g = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.max(np.abs(w))), err_msg=where)
    elif isinstance(want, list) and want:
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g_item, w_item) in enumerate(zip(got, want)):
            assert_json_close(g_item, w_item, rtol, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _numeric(value) -> bool:
    """Whether ``value`` is a number or a non-empty (nested) list of numbers."""
    if isinstance(value, list):
        return bool(value) and all(_numeric(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gradient_request(net: edgegrad.Network | None, x, targets=None, loss: str = "", inline: bool = True,
                     **kwargs) -> job_pb2.GradientRequest:
    """A GradientRequest with the network inline (or by hash)."""
    req = job_pb2.GradientRequest(inputs=codec.tensor_from_array(np.asarray(x, dtype=np.float64)), loss=loss,
                                  **kwargs)
    if net is not None:
        if inline:
            req.network_inline.CopyFrom(codec.network_to_proto(net))
        else:
            req.network_hash = net.content_hash
    if targets is not None:
        req.targets.CopyFrom(codec.tensor_from_array(np.asarray(targets, dtype=np.float64)))
    return req


def collect(events) -> tuple[job_pb2.Job, list[job_pb2.ResultChunk], job_pb2.Job]:
    """(first state, chunks, final job) of a Compute/WatchJob stream."""
    first, chunks, done = None, [], None
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "state" and first is None:
            first = event.state
        elif kind == "chunk":
            chunks.append(event.chunk)
        elif kind == "done":
            done = event.done
    return first, chunks, done


def assemble(layout: job_pb2.ResultLayout, chunks, loss: float | None) -> edgegrad.GradientResult:
    """The GradientResult the chunks carry."""
    asm = chunking.ResultAssembler(layout)
    for chunk in chunks:
        asm.add(chunk)
    return asm.result(loss)


def loss_of(job: job_pb2.Job) -> float | None:
    """The job's loss, or None in output mode."""
    return job.loss if job.HasField("loss") else None


def get_capabilities(stub) -> service_pb2.Capabilities:
    """GetCapabilities."""
    return stub.GetCapabilities(service_pb2.GetCapabilitiesRequest())


def burst_worker(settings) -> None:
    """Run one real worker process until its queue is empty."""
    from edgegrad.server.cluster import settings_env

    env = {**os.environ, **settings_env(settings)}
    subprocess.run([sys.executable, "-m", "edgegrad", "worker", "--burst", "--name", f"{settings.queue}.burst",
                    "--log-level", "WARNING"], env=env, check=True, timeout=120)


class CountCalls(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Counts a client's calls by method name (``counts``, and ``calls`` in order); each call named in ``hold``
    is held back ``delay`` seconds first (a slow link)."""

    def __init__(self, delay: float = 0.0, hold: tuple[str, ...] = ()) -> None:
        self.counts: dict[str, int] = {}
        self.calls: list[str] = []
        self.delay, self.hold = delay, hold

    def _count(self, details) -> None:
        name = details.method.rsplit("/", 1)[-1]
        self.counts[name] = self.counts.get(name, 0) + 1
        self.calls.append(name)
        if name in self.hold:
            time.sleep(self.delay)

    def intercept_unary_unary(self, continuation, details, request):
        self._count(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._count(details)
        return continuation(details, request)


def kill_worker_mid_shard(cluster, handle, worker: int = 0, timeout: float = 120.0) -> tuple[job_pb2.Job, list[int]]:
    """SIGKILL ``worker`` while it runs a shard of ``handle``'s job; (the job as then seen, the shards it was running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = handle.refresh()
        running = [s.index for s in job.shards if s.state == job_pb2.JOB_STATE_RUNNING
                   and s.worker == cluster.worker_name(worker)]
        if running:
            cluster.kill_worker(worker)
            return job, running
        assert job.state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING), \
            "the job ended before a worker could be killed"
        time.sleep(0.005)
    pytest.fail(f"worker {worker} never ran a shard")


#: a GradientResult's array fields
RESULT_FIELDS = ("outputs", "edge_grads", "deltas", "norms")


def assert_same_bits(got: edgegrad.GradientResult, want: edgegrad.GradientResult) -> None:
    """Every array of ``got`` has ``want``'s shape, dtype and bits (absent where it is absent), and the same loss."""
    for field in RESULT_FIELDS:
        a, b = getattr(got, field), getattr(want, field)
        if b is None:
            assert a is None, field
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, field
        assert a.tobytes() == b.tobytes(), field
    assert got.loss == want.loss
