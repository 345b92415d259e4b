"""``edgegrad protos OUT_DIR``: every .proto another language needs, compiling on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgegrad.wire.protofiles import needed_protos

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {"edgegrad/v1/job.proto", "edgegrad/v1/network.proto", "edgegrad/v1/service.proto",
            "edgegrad/v1/tensor.proto", "google/rpc/status.proto", "google/protobuf/any.proto",
            "google/protobuf/empty.proto", "google/protobuf/timestamp.proto"}


@pytest.mark.service  # starts a process
def test_protos_command_writes_the_import_closure(tmp_path: Path) -> None:
    out = tmp_path / "protos"
    run = subprocess.run([sys.executable, "-m", "edgegrad", "protos", str(out)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    written = {str(p.relative_to(out)) for p in out.rglob("*.proto")}
    assert written == EXPECTED
    assert sorted(run.stdout.split()) == sorted(os.path.join(str(out), n) for n in EXPECTED)
    for name in ("edgegrad/v1/service.proto", "edgegrad/v1/job.proto"):
        assert (out / name).read_bytes() == (ROOT / "protos" / name).read_bytes()


@pytest.mark.service  # starts a process
def test_written_protos_compile_with_nothing_else_on_the_include_path(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools not installed (the test extra)")
    out = tmp_path / "protos"
    subprocess.run([sys.executable, "-m", "edgegrad", "protos", str(out)], check=True, capture_output=True)
    gen = tmp_path / "gen"
    gen.mkdir()
    # no -I for grpc_tools' own well-known types: OUT_DIR alone has to be enough
    rc = protoc.main(["protoc", f"-I{out}", f"--descriptor_set_out={gen / 'set.pb'}", "--include_imports",
                      *(str(out / n) for n in sorted(EXPECTED) if n.startswith("edgegrad/"))])
    assert rc == 0


def test_shipped_well_known_types_are_protobufs_own() -> None:
    grpc_tools = pytest.importorskip("grpc_tools", reason="grpcio-tools not installed (the test extra)")
    std = Path(grpc_tools.__file__).parent / "_proto"
    for name, path in needed_protos().items():
        if name.startswith("google/protobuf/"):
            assert path.read_bytes() == (std / name).read_bytes(), f"{name} differs from protobuf's"


def test_result_fields_are_described_for_each_mode() -> None:
    text = (ROOT / "protos" / "edgegrad" / "v1" / "job.proto").read_text()
    for phrase in ("Output mode: B x K x E", "Loss mode: E", "Loss mode with per_example: B x E",
                   "Output mode: B x K x N", "Loss mode: N", "B x K in every mode"):
        assert phrase in text


@pytest.mark.service  # starts a process
def test_protos_refuses_a_file_as_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    run = subprocess.run([sys.executable, "-m", "edgegrad", "protos", str(target)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and run.stderr == f"error: {target}: exists and is not a folder\n"
