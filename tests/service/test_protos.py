"""The checked-in generated code under edgegrad/v1 matches protos/edgegrad/v1/*.proto."""

from __future__ import annotations

import glob
import importlib
import os
import re

import pytest
from google.protobuf import descriptor_pb2

protoc = pytest.importorskip("grpc_tools.protoc")
import google.rpc.status_pb2 as status_pb2  # noqa: E402
import grpc_tools  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = sorted(glob.glob(os.path.join(ROOT, "protos", "edgegrad", "v1", "*.proto")))


def _protoc(*args: str) -> None:
    std = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    googleapis = os.path.dirname(os.path.dirname(os.path.dirname(status_pb2.__file__)))
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'protos')}", f"-I{std}", f"-I{googleapis}",
                      *args, *PROTOS])
    assert rc == 0, "protoc failed"


def _strip_versions(text: str) -> str:
    """``text`` without the lines that name the generator's version (protobuf's runtime check, grpc's
    GRPC_GENERATED_VERSION): a newer grpcio-tools alone must not make the checked-in code stale."""
    return "\n".join(line for line in text.splitlines()
                     if not re.search(r"version|^\s+\d+,$", line, re.IGNORECASE))


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """protoc adds json_name to descriptor sets but not to generated code; compare without it."""
    def visit(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            field.ClearField("json_name")
        for nested in message.nested_type:
            visit(nested)
    for message in file.message_type:
        visit(message)


def test_protos_exist() -> None:
    assert {os.path.basename(p) for p in PROTOS} >= {"tensor.proto", "network.proto", "job.proto",
                                                      "service.proto"}


def test_generated_descriptors_match_protos(tmp_path) -> None:
    out = tmp_path / "set.pb"
    _protoc(f"--descriptor_set_out={out}")
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert len(fds.file) == len(PROTOS)
    for fresh in fds.file:
        _drop_json_names(fresh)
        module = importlib.import_module(fresh.name.replace(".proto", "_pb2").replace("/", "."))
        checked_in = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert checked_in == fresh, f"{fresh.name}: generated code is stale; run scripts/gen-protos.sh"


def test_generated_files_match_protos(tmp_path) -> None:
    _protoc(f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}")
    fresh = sorted(glob.glob(str(tmp_path / "edgegrad" / "v1" / "*_pb2*.py*")))
    assert fresh
    for path in fresh:
        name = os.path.relpath(path, tmp_path)
        mine = os.path.join(ROOT, name)
        assert os.path.exists(mine), f"{name} missing; run scripts/gen-protos.sh"
        with open(path, encoding="utf-8") as a, open(mine, encoding="utf-8") as b:
            assert _strip_versions(a.read()) == _strip_versions(b.read()), \
                f"{name} is stale; run scripts/gen-protos.sh"


def test_only_the_generators_version_lines_are_ignored() -> None:
    checked_in = "GRPC_GENERATED_VERSION = '1.85.1'\n_sym_db = 1\nclass JobsStub:\n    pass\n"
    newer_tools = checked_in.replace("1.85.1", "1.85.4")
    assert _strip_versions(newer_tools) == _strip_versions(checked_in)
    assert _strip_versions(checked_in.replace("JobsStub", "JobStub")) != _strip_versions(checked_in)
