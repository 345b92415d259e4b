"""The client's hand decoding of chunk events agrees with protobuf's on every encoding of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput
from edgegrad.jobs.server_networks import NetworkMeta
from edgegrad.v1 import job_pb2, tensor_pb2
from edgegrad.wire.chunking import ResultAssembler, result_chunks, result_layout
from edgegrad.wire.framing import chunk_event, length_delimited, varint
from edgegrad.wire.rawchunk import RawChunk, as_message, decode_event

_U64 = st.integers(0, 2**64 - 1)


def _key(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


@st.composite
def chunks(draw) -> job_pb2.ResultChunk:
    data = draw(st.binary(max_size=64))
    return job_pb2.ResultChunk(
        seq=draw(_U64), field=draw(st.integers(0, 3)), start=draw(_U64), stop=draw(_U64),
        row_start=draw(_U64), row_stop=draw(_U64), shard=draw(st.integers(0, 2**32 - 1)),
        data=tensor_pb2.Tensor(dtype=draw(st.integers(0, 5)), shape=draw(st.lists(_U64, max_size=3)), data=data))


def _same(raw: RawChunk, msg: job_pb2.ResultChunk) -> None:
    for name in ("seq", "field", "start", "stop", "row_start", "row_stop", "shard"):
        assert getattr(raw, name) == getattr(msg, name), name
    assert raw.dtype == msg.data.dtype and raw.shape == tuple(msg.data.shape) and bytes(raw.data) == msg.data.data
    assert as_message(raw) == msg


@given(chunks())
@settings(max_examples=200, deadline=None)
def test_a_chunk_event_decodes_to_the_chunk_protobuf_reads(chunk: job_pb2.ResultChunk) -> None:
    raw = job_pb2.JobEvent(chunk=chunk).SerializeToString()
    decoded = decode_event(raw)
    assert isinstance(decoded, RawChunk)
    _same(decoded, chunk)


@given(chunks(), st.randoms(use_true_random=False), st.lists(st.tuples(st.integers(9, 40), st.integers(0, 5)),
                                                              max_size=3))
@settings(max_examples=200, deadline=None)
def test_fields_in_any_order_unknown_fields_and_repeats_read_as_protobuf_reads_them(chunk, rnd, extra) -> None:
    """Each field encoded on its own, shuffled, with unknown fields and sometimes a field twice:
    the hand decoder reads it exactly or hands it to protobuf, never anything else."""
    parts = []
    for name, number in (("seq", 1), ("field", 2), ("start", 3), ("stop", 4), ("row_start", 5), ("row_stop", 6),
                         ("shard", 7)):
        parts.append(_key(number, 0) + varint(getattr(chunk, name)))
    tensor = [_key(1, 0) + varint(chunk.data.dtype), *(_key(2, 0) + varint(d) for d in chunk.data.shape),
              b"".join(length_delimited(3, [chunk.data.data]))]
    rnd.shuffle(tensor)
    parts.append(b"".join(length_delimited(8, [b"".join(tensor)])))
    for number, wire in extra:  # unknown fields of every wire type (3 and 4, groups, are refused by both)
        body = {0: varint(7), 1: b"\0" * 8, 2: varint(2) + b"ab", 5: b"\0" * 4}.get(wire, b"")
        parts.append(_key(number, wire) + body)
    if rnd.random() < 0.3:
        parts.append(rnd.choice(parts))  # a field repeated: protobuf's own merge rules decide
    rnd.shuffle(parts)
    raw = b"".join(length_delimited(2, [b"".join(parts)]))
    _decodes_as_protobuf_does(raw)


def _decodes_as_protobuf_does(raw: bytes) -> None:
    """decode_event gives what protobuf gives for ``raw``, or fails where protobuf fails."""
    try:
        expected = job_pb2.JobEvent.FromString(raw)
    except Exception:
        with pytest.raises(Exception):  # noqa: B017 - whatever it raises: protobuf's own parser refused it too
            decode_event(raw)
        return
    decoded = decode_event(raw)
    if isinstance(decoded, RawChunk):
        _same(decoded, expected.chunk)
    else:
        assert decoded == expected


@given(st.binary(max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_as_protobuf_decodes_them_or_fail_as_it_does(raw: bytes) -> None:
    _decodes_as_protobuf_does(raw)


def test_other_events_and_the_servers_own_chunk_events_take_their_roads() -> None:
    state = job_pb2.JobEvent(state=job_pb2.Job(name="jobs/x")).SerializeToString()
    assert decode_event(state) == job_pb2.JobEvent(state=job_pb2.Job(name="jobs/x"))
    net = NetworkMeta("h", ["a", "b"], ["y"], 3, 5, 3)
    layout = result_layout(net, 7, "mse", True, "float64", chunk_bytes=300)
    rng = np.random.default_rng(0)
    result = GradientResult(rng.normal(size=(7, 1)), 0.5, rng.normal(size=(7, 5)), rng.normal(size=(7, 3)))
    assembler = ResultAssembler(layout)
    for chunk in result_chunks(result, layout):
        payload = chunk.SerializeToString()  # as a worker writes it: the server puts the seq in front
        without_seq = job_pb2.ResultChunk()
        without_seq.CopyFrom(chunk)
        without_seq.seq = 0
        decoded = decode_event(chunk_event(chunk.seq, without_seq.SerializeToString()))
        assert isinstance(decoded, RawChunk)
        assert decoded.seq == chunk.seq and as_message(decoded) == job_pb2.ResultChunk.FromString(payload)
        assembler.add(decoded)
    got = assembler.result(0.5)
    for name in ("outputs", "edge_grads", "deltas"):
        assert np.array_equal(getattr(got, name), getattr(result, name))


@pytest.mark.parametrize("number,value", [(7, 2**32 + 5), (2, 2**31 + 1), (2, 2**64 - 1)])
def test_values_too_wide_for_their_field_read_as_protobuf_casts_them(number: int, value: int) -> None:
    raw = b"".join(length_delimited(2, [_key(1, 0) + varint(3) + _key(number, 0) + varint(value)]))
    assert decode_event(raw) == job_pb2.JobEvent.FromString(raw)


def test_a_raw_chunk_whose_data_does_not_fit_its_shape_is_refused() -> None:
    net = NetworkMeta("h", ["a"], ["y"], 1, 1, 1)
    layout = result_layout(net, 2, None, False, "float64", chunk_bytes=1 << 20)
    chunk = job_pb2.ResultChunk(seq=1, field=job_pb2.RESULT_FIELD_OUTPUTS, start=0, stop=2, row_start=0, row_stop=2,
                                data=tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=[2, 1], data=b"\0" * 8))
    decoded = decode_event(job_pb2.JobEvent(chunk=chunk).SerializeToString())
    with pytest.raises(InvalidInput, match="chunk.data"):
        ResultAssembler(layout).add(decoded)
