"""``edgegrad.AsyncClient`` against a real server, real worker processes and real Redis."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from svc_helpers import example_network, served

from edgegrad import errors
from edgegrad.client import AsyncClient, Backoff
from edgegrad.v1 import job_pb2

NET = example_network(seed=31)
RNG = np.random.default_rng(8)
X = RNG.normal(size=(6, NET.n_inputs))
T = RNG.uniform(size=(6, NET.n_outputs))
BIG = example_network(n_inputs=10, n_nodes=120, n_outputs=4, density=0.5, seed=12)
BIG_X = np.random.default_rng(6).normal(size=(48, BIG.n_inputs))


def run(coro):
    """Run a coroutine on a fresh event loop (grpc.aio channels belong to one loop)."""
    return asyncio.run(coro)


@pytest.mark.parametrize("options", [{}, {"loss": "mse"}, {"loss": "softmax_ce", "per_example": True},
                                     {"loss": "mse", "reduction": "sum", "dtype": "float32"}],
                         ids=["output", "mse", "softmax_ce-per-example", "mse-sum-float32"])
def test_gradients_equal_the_in_process_call_bit_for_bit(cluster, options) -> None:
    kwargs = dict(options, **({"targets": T} if "loss" in options else {}))

    async def go():
        async with AsyncClient(cluster.address, timeout=60) as c:
            # several requests at once on one channel
            return await asyncio.gather(*(c.gradients(NET, X, **kwargs) for _ in range(3)))

    local = served(NET, X, settings=cluster.settings, **kwargs)  # what the service computes, in process
    for remote in run(go()):
        assert remote == local and remote.loss == local.loss
        assert remote.edge_grads.tobytes() == local.edge_grads.tobytes()


def test_chunks_resume_after_the_stream_is_cut(cluster) -> None:
    async def go():
        async with AsyncClient(cluster.address, timeout=60) as c:
            handle = await c.submit(BIG, BIG_X)
            seqs = []
            async for chunk in handle.chunks():
                seqs.append(chunk.seq)
                if len(seqs) in (2, 30):
                    handle._drop_stream()
            return handle, seqs, await handle.result()

    handle, seqs, result = run(go())
    assert handle.reconnects >= 2
    assert seqs == list(range(1, handle.job.layout.chunk_count + 1)) and len(seqs) > 50
    assert result == served(BIG, BIG_X, settings=cluster.settings)


def test_cancel_list_delete_and_not_found(namespace, thread_server) -> None:
    server = thread_server(namespace("aclient-cancel"))  # no workers: jobs stay queued

    async def go():
        async with AsyncClient(server.address, timeout=30) as c:
            handle = await c.submit(NET, X)
            assert handle.job.state == job_pb2.JOB_STATE_QUEUED
            assert (await handle.cancel()).state == job_pb2.JOB_STATE_CANCELLED
            with pytest.raises(errors.Cancelled):
                await handle.result()
            names = [job.name async for job in c.list_jobs(page_size=2)]
            assert handle.name in names
            await handle.delete()
            with pytest.raises(errors.NotFound):
                await c.get_job(handle.name)

    run(go())


def test_token_and_retries(cluster, thread_server) -> None:
    server = thread_server(cluster.settings.with_(auth_token="async-token"))

    async def go():
        async with AsyncClient(server.address, timeout=30) as c:
            with pytest.raises(errors.Unauthenticated):
                await c.capabilities()
        async with AsyncClient(server.address, timeout=60, token="async-token") as c:
            return await c.gradients(NET, X, targets=T, loss="mse")

    assert run(go()) == served(NET, X, T, loss="mse", settings=cluster.settings)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def nobody():
        async with AsyncClient(f"127.0.0.1:{port}", backoff=Backoff(initial=0.01, maximum=0.02, attempts=3)) as c:
            await c.capabilities(timeout=10)

    with pytest.raises(errors.Unavailable):
        run(nobody())
