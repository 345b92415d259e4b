"""The client's I/O-free parts: requests it builds, events it accepts, errors it maps (no server needed)."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

import edgegrad
from edgegrad import errors
from edgegrad.client.errors import from_status, job_error
from edgegrad.client.options import Backoff, ConnectOptions, Deadline
from edgegrad.client.protocol import WatchState, prepare
from edgegrad.v1 import job_pb2
from edgegrad.wire import chunking, codec

NET = edgegrad.Network.from_dict({
    "inputs": ["x1", "x2"], "outputs": ["y", "h1"],
    "nodes": [{"id": "h1", "activation": "tanh", "bias": 0.1}, {"id": "y", "activation": "sigmoid"}],
    "edges": [{"src": "x1", "dst": "h1", "weight": 0.5}, {"src": "x2", "dst": "h1", "weight": -0.3},
              {"src": "h1", "dst": "y", "weight": 1.2}, {"src": "x1", "dst": "y", "weight": 0.7}],
})
X = np.random.default_rng(1).normal(size=(40, 2))
T = np.random.default_rng(2).uniform(size=(40, 2))


def _events(res: edgegrad.GradientResult, loss: str | None, per_example: bool, chunk_bytes: int):
    """What a server would stream for ``res``: state, chunks, done."""
    layout = chunking.result_layout(NET, X.shape[0], loss, per_example, "float64", chunk_bytes)
    job = job_pb2.Job(name="jobs/x", state=job_pb2.JOB_STATE_RUNNING, layout=layout)
    yield job_pb2.JobEvent(state=job)
    for chunk in chunking.result_chunks(res, layout):
        yield job_pb2.JobEvent(chunk=chunk)
    done = job_pb2.Job(name="jobs/x", state=job_pb2.JOB_STATE_SUCCEEDED, layout=layout)
    if res.loss is not None:
        done.loss = res.loss
    yield job_pb2.JobEvent(done=done)


@pytest.mark.parametrize("loss,per_example", [(None, False), ("mse", False), ("mse", True)])
def test_state_assembles_the_exact_result_even_with_duplicates(loss, per_example) -> None:
    res = edgegrad.gradients(NET, X, targets=T if loss else None, loss=loss, per_example=per_example)
    events = list(_events(res, loss, per_example, chunk_bytes=512))
    assert sum(e.HasField("chunk") for e in events) > 3, "the test needs several chunks"
    state = WatchState()
    fresh = [state.feed(e) for e in events[:4]]
    # A reconnect replays from after_seq: an overlap must be ignored, not double-counted.
    fresh += [state.feed(e) for e in events[2:]]
    assert [c.seq for c in fresh if c is not None] == list(range(1, state.after_seq + 1))
    assert state.done
    out = state.result()
    assert out == res and out.loss == res.loss
    assert out.edge_grads.tobytes() == res.edge_grads.tobytes()


def test_a_watch_can_start_after_a_seq_and_pass_chunks_through_unkept() -> None:
    res = edgegrad.gradients(NET, X)
    events = list(_events(res, None, False, chunk_bytes=512))
    state = WatchState("jobs/x", after_seq=3, assemble=False)
    passed = [state.feed(e) for e in events]
    assert [c.seq for c in passed if c is not None] == list(range(4, state.after_seq + 1))  # 1..3: already had
    assert state.done and state._assembler is None  # nothing kept: memory does not grow with the result
    with pytest.raises(errors.FailedPrecondition, match="assemble=False"):
        state.result()


def test_a_gap_in_the_chunks_is_an_error_not_a_wrong_result() -> None:
    res = edgegrad.gradients(NET, X)
    events = list(_events(res, None, False, chunk_bytes=512))
    state = WatchState()
    state.feed(events[0])
    with pytest.raises(errors.FailedPrecondition, match="gap"):
        state.feed(events[2])


def test_failed_and_cancelled_jobs_raise_their_errors() -> None:
    failed = job_pb2.Job(name="jobs/a", state=job_pb2.JOB_STATE_FAILED,
                         error=status_pb2.Status(code=code_pb2.INTERNAL, message="worker exploded"))
    state = WatchState()
    state.feed(job_pb2.JobEvent(done=failed))
    with pytest.raises(errors.JobFailed, match="worker exploded"):
        state.result()
    cancelled = job_pb2.Job(name="jobs/b", state=job_pb2.JOB_STATE_CANCELLED)
    assert isinstance(job_error(cancelled), errors.Cancelled)


def test_bad_request_details_become_invalid_input_with_the_field() -> None:
    bad = error_details_pb2.BadRequest()
    bad.field_violations.add(field="edges[3].dst", description="edges[3].dst: unknown node 'h9'")
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="edges[3].dst: unknown node 'h9'")
    status.details.add().Pack(bad)
    exc = from_status(status, "UNKNOWN")
    assert isinstance(exc, errors.InvalidInput)
    assert exc.message == "edges[3].dst: unknown node 'h9'" and exc.field == "edges[3].dst"
    assert isinstance(from_status(status_pb2.Status(code=code_pb2.NOT_FOUND, message="jobs/x"), "X"),
                      errors.NotFound)


def test_requests_are_validated_locally_with_the_in_process_messages() -> None:
    with pytest.raises(errors.InvalidInput, match=r"inputs: expected shape \(B, 2\)"):
        prepare(NET, np.zeros((3, 5)), None, None, "mean", False, "float64", request_id=None).inline()
    with pytest.raises(errors.InvalidInput, match="loss: unknown loss 'foo'"):
        prepare(NET, X, T, "foo", "mean", False, "float64", request_id=None).inline()
    req = prepare(NET, X, T, "mse", "sum", True, "float64", request_id="r1").inline()
    assert req.request_id == "r1" and req.request.network_hash == NET.content_hash
    assert codec.array_from_tensor(req.request.inputs, "inputs").tobytes() == X.tobytes()
    assert prepare(NET, X, None, None, "mean", False, "float64", request_id=None).inline().request_id


def test_connect_options_token_tls_and_backoff() -> None:
    opts = ConnectOptions.build("grpcs://example:443", token="s3cret")
    assert opts.target == "example:443" and opts.tls
    assert opts.metadata() == (("authorization", "Bearer s3cret"),)
    assert ConnectOptions.build("h:1", token="").metadata() == ()
    delays = list(Backoff(initial=0.1, maximum=0.4, attempts=6).delays())
    assert len(delays) == 5 and all(0 < d <= 0.4 for d in delays) and delays[-1] >= 0.2
    assert Deadline(None).remaining() is None and not Deadline(10).expired()
    assert grpc.StatusCode.UNAVAILABLE  # the module the client builds on is importable


def test_backoff_rides_out_until_the_deadline_and_gives_up_without_one() -> None:
    endless = Backoff(initial=0.01, maximum=0.02).delays(Deadline(60))
    assert len([d for _, d in zip(range(1000), endless)]) == 1000   # the caller stops at the deadline
    bounded = list(Backoff(initial=0.01, maximum=0.02, give_up_after=0.5).delays(Deadline(None)))
    assert 0.5 <= sum(bounded) < 0.6
    assert len(list(Backoff(attempts=4).delays(Deadline(60)))) == 3


def test_result_layouts_count_chunks_exactly_and_never_wrap_around() -> None:
    from types import SimpleNamespace

    from edgegrad.wire.chunking import plan_chunks, result_bytes, result_layout

    small = SimpleNamespace(outputs=["a", "b", "c"], n_edges=1000, n_nodes=50)
    for loss, per_example in ((None, False), ("mse", True), ("mse", False)):
        for batch in (1, 7, 130):           # 130 rows: several shards of 64 and ~10k chunks of 300 B, in well under 1 s
            for chunk_bytes in (300, 4096, 1 << 20):
                for shard_rows in (0, 1, 3, 64, 10_000):
                    layout = result_layout(small, batch, loss, per_example, "float64", chunk_bytes, shard_rows)
                    plans = plan_chunks(layout)
                    assert layout.chunk_count == len(plans)
                    covered: dict[int, int] = {}
                    for p in plans:  # every element of every field exactly once
                        covered[p.field] = covered.get(p.field, 0) + p.stop - p.start
                    assert covered == {f.field: math.prod(f.shape) for f in layout.fields if math.prod(f.shape)}
    # 10^6 × 10^7 × 5·10^7 elements overflow int64; the size must stay exact (and be cheap to get)
    huge = SimpleNamespace(outputs=["y"] * 10_000_000, n_edges=50_000_000, n_nodes=10_000_000)
    layout = result_layout(huge, 1_000_000, None, False, "float64", 1 << 20)
    assert result_bytes(layout) == 8 * 1_000_000 * (10_000_000 + 10_000_000 * 50_000_000 + 10_000_000 * 10_000_000)


def test_a_population_is_whole_once_its_last_chunk_arrives_before_the_jobs_own_end() -> None:
    from edgegrad.engine.population import flat_results
    from edgegrad.wire.chunking import chunk_parts
    from edgegrad.wire.framing import chunk_event
    from edgegrad.wire.population import flat_arrays, population_chunk_plans, population_layout, population_offsets
    from edgegrad.wire.rawchunk import decode_event

    nets = [NET, NET, NET]
    want = edgegrad.gradients_many(nets, X, T, loss="mse")
    sizes = np.array([[X.shape[0], 2, NET.n_edges, NET.n_nodes]] * 3, dtype=np.int64)
    layout = population_layout(sizes, "mse", False, "float64", 256, [0, 2])
    arrays = flat_arrays(flat_results(nets, X, T, loss="mse"), layout)
    offsets = population_offsets(layout)
    state = WatchState()
    state.feed(job_pb2.JobEvent(state=job_pb2.Job(name="jobs/p", state=job_pb2.JOB_STATE_RUNNING, layout=layout)))
    seq = 0
    for shard in range(layout.shard_count):
        a = int(layout.population.shard_starts[shard])
        plans = population_chunk_plans(layout, shard, offsets)
        for _, pieces in chunk_parts({f: v[offsets[f][a]:] for f, v in arrays.items()}, layout, plans, shard=shard,
                                     offsets={f: int(off[a]) for f, off in offsets.items()}):
            assert not state.population_whole()
            with pytest.raises(errors.FailedPrecondition, match="has not finished"):
                state.population_results()      # part of the chunks: the job's own end is still needed
            seq += 1
            state.feed(decode_event(chunk_event(seq, b"".join(bytes(p) for p in pieces))))
            state.build_whole()   # a whole shard's results are built while the next one's chunks come
        if shard == 0:
            early = state._population()._built
            assert all(r is not None for r in early[:2]) and early[2] is None   # shard 0 built, shard 1 not yet
    assert state.population_whole() and not state.done   # every chunk in, the job not ended yet
    results = state.population_results()
    assert results[0] is early[0]   # built once, when its shard became whole
    ready = state.take_ready()   # what results() iterates: the same objects, not built again
    assert [i for i, _ in ready] == [0, 1, 2] and all(r is results[i] for i, r in ready)
    for got, res in zip(results, want):
        assert got.edge_grads.tobytes() == res.edge_grads.tobytes() and got.loss == res.loss
        assert got.outputs.tobytes() == res.outputs.tobytes() and got.deltas.tobytes() == res.deltas.tobytes()
