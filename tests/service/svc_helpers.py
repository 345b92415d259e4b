"""Helpers shared by the service tests (networks, requests, stream collection)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import edgegrad
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
