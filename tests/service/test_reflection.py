"""Server reflection on the real server process, under grpc.reflection.v1 and v1alpha."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICES = {"edgegrad.v1.Edgegrad", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"}


def _ask(channel: grpc.Channel, version: str, **request) -> reflection_pb2.ServerReflectionResponse:
    # v1 and v1alpha messages are the same on the wire (same fields, same numbers)
    call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return next(iter(call(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10)))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_both_versions_list_services_and_describe_edgegrad(cluster, version: str) -> None:
    with grpc.insecure_channel(cluster.address) as channel:
        listed = _ask(channel, version, list_services="")
        assert {s.name for s in listed.list_services_response.service} == SERVICES
        files = _ask(channel, version, file_containing_symbol="edgegrad.v1.Edgegrad")
        names = [descriptor_pb2.FileDescriptorProto.FromString(b).name
                 for b in files.file_descriptor_response.file_descriptor_proto]
        assert "edgegrad/v1/service.proto" in names


def test_v1_describes_itself_with_v1alphas_fields(cluster) -> None:
    with grpc.insecure_channel(cluster.address) as channel:
        answer = _ask(channel, "v1", file_containing_symbol="grpc.reflection.v1.ServerReflection")
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in answer.file_descriptor_response.file_descriptor_proto]
    v1 = next(f for f in files if f.name == "grpc/reflection/v1/reflection.proto")
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    fields = lambda f: {(m.name, x.name, x.number, x.type) for m in f.message_type for x in m.field}  # noqa: E731
    assert v1.package == "grpc.reflection.v1" and fields(v1) == fields(alpha)
    assert [m.name for s in v1.service for m in s.method] == ["ServerReflectionInfo"]


def test_a_reflection_client_resolves_every_edgegrad_method(cluster) -> None:
    """grpcio-reflection's own client builds the whole service from the server alone."""
    with grpc.insecure_channel(cluster.address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName("edgegrad.v1.Edgegrad")
        assert {"SubmitJob", "Compute", "WatchJob", "UploadBatch"} <= {m.name for m in service.methods}
        assert pool.FindMessageTypeByName("edgegrad.v1.Job").fields_by_name["error"].message_type.full_name \
            == "google.rpc.Status"
