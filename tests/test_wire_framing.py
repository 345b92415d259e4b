"""The bytes built by hand (edgegrad.wire.framing) are, byte for byte, what protobuf serializes from the descriptors."""

from __future__ import annotations

import numpy as np
import pytest
from google.rpc import status_pb2

from edgegrad.engine.result import GradientResult
from edgegrad.jobs.server_networks import NetworkMeta
from edgegrad.v1 import job_pb2, service_pb2, tensor_pb2
from edgegrad.wire.chunking import chunk_payloads, field_arrays, plan_chunks, result_layout
from edgegrad.wire.framing import chunk_event, jobs_event
from edgegrad.wire.rawchunk import RawChunk, decode_event

NET = NetworkMeta("h", ["a", "b"], ["y", "z"], 4, 6, 2)


def _messages(loss: str | None, per_example: bool, dtype: str, shard_rows: int) -> list[tuple[bytes, bytes]]:
    """(hand-built chunk, the same chunk serialized by protobuf) of every chunk of a random result."""
    layout = result_layout(NET, 5, loss, per_example, dtype, chunk_bytes=300, shard_rows=shard_rows)
    rng = np.random.default_rng(1)
    shapes = [tuple(f.shape) for f in layout.fields]
    result = GradientResult(*(rng.normal(size=shapes[0]), 0.25, rng.normal(size=shapes[1]), rng.normal(size=shapes[2])))
    arrays = field_arrays(result, layout)
    rows = {f.field: tuple(int(s) for s in f.shape[1:]) for f in layout.fields}
    out = []
    plans = plan_chunks(layout)
    for (_seq, payload), p in zip(chunk_payloads(arrays, layout, plans, shard=3), plans):
        shape = (p.row_stop - p.row_start, *rows[p.field]) if p.whole_rows else (p.stop - p.start,)
        data = arrays[p.field][p.start:p.stop].tobytes()
        expected = job_pb2.ResultChunk(field=p.field, start=p.start, stop=p.stop, row_start=p.row_start,
                                       row_stop=p.row_stop, shard=3,
                                       data=tensor_pb2.Tensor(dtype=layout.dtype, shape=shape, data=data))
        out.append((payload, expected.SerializeToString()))
    assert out
    return out


@pytest.mark.parametrize("loss,per_example,dtype,shard_rows", [
    (None, False, "float64", 0), ("mse", False, "float32", 2), ("mse", True, "float64", 3)])
def test_chunks_framed_by_hand_are_the_bytes_protobuf_writes(loss, per_example, dtype, shard_rows) -> None:
    for payload, expected in _messages(loss, per_example, dtype, shard_rows):
        assert payload == expected


def test_a_chunk_event_is_the_bytes_protobuf_writes_and_reads_back_by_hand() -> None:
    for seq, (payload, _) in enumerate(_messages("mse", True, "float64", 2), start=1):
        chunk = job_pb2.ResultChunk.FromString(payload)
        chunk.seq = seq + 2**40  # a seq whose varint takes several bytes
        event = chunk_event(chunk.seq, payload)
        assert event == job_pb2.JobEvent(chunk=chunk).SerializeToString()
        decoded = decode_event(event)
        assert isinstance(decoded, RawChunk) and decoded.seq == chunk.seq and decoded.message() == chunk


def test_a_jobs_event_is_the_bytes_protobuf_writes() -> None:
    event = job_pb2.JobEvent(heartbeat=job_pb2.Heartbeat(state=2, chunks_done=7))
    assert jobs_event("jobs/abc", event.SerializeToString()) == \
        service_pb2.JobsEvent(name="jobs/abc", event=event).SerializeToString()
    error = status_pb2.Status(code=11, message="after_seq: gone")
    assert jobs_event("jobs/abc", error=error) == service_pb2.JobsEvent(name="jobs/abc", error=error).SerializeToString()
