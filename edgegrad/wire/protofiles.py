"""Every .proto a client in another language needs, and ``edgegrad protos OUT_DIR`` that writes them.

edgegrad's own files (``protos/edgegrad/v1``, shipped as package data ``edgegrad.protos``) import
``google/rpc/status.proto``, taken from the installed googleapis-common-protos, and the
well-known types ``google/protobuf/{any,empty,timestamp}.proto``, which the protobuf runtime does
not ship: edgegrad ships the protobuf project's own copies (``edgegrad/well-known``). The files
written are the closure of the imports of ``edgegrad/v1/*.proto``, at their import paths, so
``protoc -I OUT_DIR OUT_DIR/edgegrad/v1/service.proto`` (or any gRPC loader given OUT_DIR as
its include folder) finds everything.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInput

__all__ = ["proto_roots", "needed_protos", "write_protos", "add_arguments", "run"]

_IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)
_OWN = "edgegrad/v1"


def proto_roots() -> list[Path]:
    """The include folders searched, in order: edgegrad's protos, googleapis', the shipped well-known types."""
    import google.rpc.status_pb2 as status_pb2

    package = Path(__file__).resolve().parents[1]          # edgegrad/
    return [_own_root(package), Path(status_pb2.__file__).resolve().parents[2], package / "well-known"]


def _own_root(package: Path) -> Path:
    """``protos/`` of a source checkout, else the installed package data (``edgegrad/protos``)."""
    checkout = package.parent / "protos"
    return checkout if (checkout / _OWN).is_dir() else package / "protos"


def needed_protos() -> dict[str, Path]:
    """Import path -> file for edgegrad's protos and everything they import, however deep."""
    roots = proto_roots()
    own = sorted(f"{_OWN}/{p.name}" for p in (roots[0] / _OWN).glob("*.proto"))
    if not own:
        raise FileNotFoundError(f"{roots[0] / _OWN}: no .proto files (a broken installation)")
    found: dict[str, Path] = {}
    todo = list(own)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = next((r / name for r in roots if (r / name).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{name}: not found in {', '.join(map(str, roots))}")
        found[name] = path
        todo.extend(_IMPORT.findall(path.read_text(encoding="utf-8")))
    return dict(sorted(found.items()))


def write_protos(out_dir: str | os.PathLike[str]) -> list[str]:
    """Copy every needed .proto into ``out_dir`` at its import path; returns the import paths written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"{out}: exists and is not a folder")
    files = needed_protos()
    try:
        for name, path in files.items():
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    except OSError as exc:
        raise InvalidInput(f"{out}: cannot write ({exc.strerror or exc})") from None
    return list(files)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``edgegrad protos OUT_DIR``."""
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the .proto files into (created if missing)")


def run(args: Any) -> int:
    """Write the protos and list them on stdout, one import path a line."""
    for name in write_protos(args.out_dir):
        sys.stdout.write(f"{os.path.join(args.out_dir, name)}\n")
    sys.stdout.flush()
    return 0
