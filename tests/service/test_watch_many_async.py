"""The asyncio client's shared watch of a submit loop (one WatchJobs stream): the twin of test_watch_many."""

from __future__ import annotations

import asyncio
import collections
import gc

import numpy as np
import pytest
from svc_helpers import example_network, served

import edgegrad
from edgegrad import errors
from edgegrad.client import AsyncClient, aiogroup, grouping
from edgegrad.client.base import STREAMS_AHEAD
from edgegrad.v1 import job_pb2, service_pb2
from edgegrad.wire.chunking import result_bytes

NET = example_network(seed=97)
X = np.random.default_rng(8).normal(size=(40, NET.n_inputs))
BIG = example_network(n_inputs=10, n_nodes=120, n_outputs=4, density=0.5, seed=12)
BIG_X = np.random.default_rng(6).normal(size=(48, BIG.n_inputs))


def counting(client: AsyncClient, monkeypatch) -> collections.Counter:
    """Count the client's WatchJobs calls and every WatchJob (the handles' own watches go through streams)."""
    calls: collections.Counter = collections.Counter()
    for owner, rpc in ((client.stub, "WatchJobs"), (client.stub, "WatchJob"), (client.streams, "WatchJob")):
        original = getattr(owner, rpc)

        def counted(*args, _rpc=rpc, _original=original, **kwargs):
            calls[_rpc] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, rpc, counted)
    return calls


def no_streams_ahead(client: AsyncClient) -> None:
    """Use up the streams opened at submit, so the next submits go by SubmitJob (and may share a watch)."""
    for _ in range(STREAMS_AHEAD):
        client.streams_ahead.try_take()


def test_a_submit_loop_beyond_the_streams_ahead_waits_through_one_shared_watch(cluster, monkeypatch) -> None:
    n = STREAMS_AHEAD + 30

    async def go():
        async with AsyncClient(cluster.address, timeout=120) as c:
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i % 40:i % 40 + 1]) for i in range(n)]
            results = [await h.result() for h in handles]
            for group in list(c.groups):
                await group.stopped()  # the stream's end comes just after the last job's last event
            assert not c.groups
            return calls, results

    calls, results = asyncio.run(go())
    assert all(r == served(NET, X[i % 40:i % 40 + 1], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 0


def test_chunks_and_wait_all_read_the_shared_watch(cluster, monkeypatch) -> None:
    async def go():
        async with AsyncClient(cluster.address, timeout=120) as c:
            no_streams_ahead(c)
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i:i + 2]) for i in range(8)]
            seqs = [chunk.seq async for chunk in handles[0].chunks()]
            jobs = await edgegrad.wait_all(handles)
            return calls, seqs, jobs, [await h.result() for h in handles]

    calls, seqs, jobs, results = asyncio.run(go())
    assert seqs == list(range(1, jobs[0].layout.chunk_count + 1))
    assert all(job.state == job_pb2.JOB_STATE_SUCCEEDED for job in jobs)
    assert all(r == served(NET, X[i:i + 2], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 0


def test_a_large_result_goes_by_its_own_watch_and_the_small_ones_share_one(cluster, monkeypatch) -> None:
    async def go():
        async with AsyncClient(cluster.address, timeout=120) as c:
            no_streams_ahead(c)
            calls = counting(c, monkeypatch)
            small = [await c.submit(NET, X[i:i + 1]) for i in range(3)]
            big = await c.submit(BIG, BIG_X)
            small += [await c.submit(NET, X[i:i + 1]) for i in range(3, 6)]
            results = [await h.result() for h in small]
            return calls, big, await big.result(), results

    calls, big, big_result, results = asyncio.run(go())
    assert result_bytes(big.job.layout) > grouping.GROUP_RESULT_BYTES
    assert big_result == served(BIG, BIG_X, settings=cluster.settings)
    assert all(r == served(NET, X[i:i + 1], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 1


def test_a_job_the_shared_watch_cannot_finish_goes_on_by_its_own_watch(cluster, monkeypatch) -> None:
    monkeypatch.setattr(grouping, "GROUP_SIZE", 4)

    async def go():
        async with AsyncClient(cluster.address, timeout=120) as c:
            no_streams_ahead(c)
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i:i + 1]) for i in range(5)]
            await handles[2].delete()  # its watch in the group ends with NOT_FOUND: its own watch reports it
            assert await handles[0].result() == served(NET, X[0:1], settings=cluster.settings)
            assert await handles[1].result() == served(NET, X[1:2], settings=cluster.settings)
            with pytest.raises(errors.NotFound):
                await handles[2].wait()
            assert await handles[3].result() == served(NET, X[3:4], settings=cluster.settings)
            # outside the first group of 4
            assert await handles[4].result() == served(NET, X[4:5], settings=cluster.settings)
            return calls

    calls = asyncio.run(go())
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 2  # the deleted job's and the fifth's


def test_a_job_cancelled_in_the_group_ends_cancelled(namespace, thread_server, monkeypatch) -> None:
    server = thread_server(namespace("aiogroup-cancel"))  # no workers: jobs stay queued until cancelled

    async def go():
        async with AsyncClient(server.address, timeout=30) as c:
            no_streams_ahead(c)
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i:i + 1]) for i in range(3)]
            first = asyncio.create_task(handles[0].wait())  # opens the group for all three
            await asyncio.sleep(0.2)
            assert len(c.groups) == 1
            await handles[1].cancel()
            with pytest.raises(errors.Cancelled):
                await handles[1].result()
            for handle in (handles[0], handles[2]):
                await handle.cancel()
            jobs = [await first, await handles[2].wait()]
            return calls, jobs, handles

    calls, jobs, handles = asyncio.run(go())
    assert [job.state for job in jobs] == [job_pb2.JOB_STATE_CANCELLED] * 2
    assert [h.state_name for h in handles] == ["cancelled"] * 3
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 0


def test_closing_the_client_stops_the_shared_watch(namespace, thread_server) -> None:
    server = thread_server(namespace("aiogroup-close"))  # no workers: the jobs never end

    async def go():
        c = AsyncClient(server.address, timeout=30)
        no_streams_ahead(c)
        handles = [await c.submit(NET, X[i:i + 1]) for i in range(3)]
        waiting = asyncio.create_task(handles[0].wait())
        await asyncio.sleep(0.2)
        (group,) = c.groups
        await c.close()
        assert group.broken and group._task is not None and group._task.done()
        with pytest.raises((Exception, asyncio.CancelledError)):  # the channel closed under its own watch
            await waiting

    asyncio.run(go())


def test_a_server_without_watch_jobs_leaves_each_job_its_own_watch(cluster, monkeypatch) -> None:
    async def go():
        async with AsyncClient(cluster.address, timeout=120) as c:
            no_streams_ahead(c)
            # a method the server does not know: its real UNIMPLEMENTED answer, as from an older server
            service = service_pb2.DESCRIPTOR.services_by_name["Edgegrad"].full_name
            monkeypatch.setattr(c.stub, "WatchJobs", c._channel.unary_stream(
                f"/{service}/NoSuchWatchJobs", request_serializer=service_pb2.WatchJobsRequest.SerializeToString,
                response_deserializer=service_pb2.JobsEvent.FromString))
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i:i + 1]) for i in range(4)]
            first = [await h.result() for h in handles]
            assert not c.unwatched.enabled
            later = [await c.submit(NET, X[i:i + 1]) for i in range(4, 6)]
            return calls, first + [await h.result() for h in later]

    calls, results = asyncio.run(go())
    assert all(r == served(NET, X[i:i + 1], settings=cluster.settings) for i, r in enumerate(results))
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 6


def test_after_the_shared_stream_drops_each_job_goes_on_by_its_own_watch(namespace, thread_server, monkeypatch) -> None:
    server = thread_server(namespace("aiogroup-drop"))  # no workers: the jobs wait until cancelled

    async def go():
        async with AsyncClient(server.address, timeout=30) as c:
            no_streams_ahead(c)
            calls = counting(c, monkeypatch)
            handles = [await c.submit(NET, X[i:i + 1]) for i in range(3)]
            first = asyncio.create_task(handles[0].wait())
            await asyncio.sleep(0.2)
            (group,) = c.groups
            group._call.cancel()  # as a dropped connection would
            await asyncio.sleep(0.2)
            assert group.broken and not c.groups
            for handle in handles:
                await handle.cancel()
            return calls, [await first] + [await h.wait() for h in handles[1:]]

    calls, jobs = asyncio.run(go())
    assert [job.state for job in jobs] == [job_pb2.JOB_STATE_CANCELLED] * 3
    assert calls["WatchJobs"] == 1 and calls["WatchJob"] == 3


def test_the_reader_stops_when_every_handle_of_its_group_is_gone(namespace, thread_server, monkeypatch) -> None:
    server = thread_server(namespace("aiogroup-gone"))  # no workers: the jobs never end, heartbeats go on
    monkeypatch.setattr(aiogroup, "SWEEP", 1)

    async def go():
        async with AsyncClient(server.address, timeout=30) as c:
            no_streams_ahead(c)
            handles = [await c.submit(NET, X[i:i + 1]) for i in range(3)]
            aiogroup.open_async_group(handles[0], c)
            (group,) = c.groups
            del handles
            gc.collect()
            for _ in range(100):  # a heartbeat makes the reader look
                if not c.groups:
                    break
                await asyncio.sleep(0.05)
            assert not c.groups and group.broken and group._task is not None and group._task.done()

    asyncio.run(go())
