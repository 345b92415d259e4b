#!/usr/bin/env bash
# Regenerate edgegrad/v1/*_pb2*.py from protos/edgegrad/v1/*.proto (needs grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
"$PY" - <<'PYEOF'
import glob, os, sys
import grpc_tools
from grpc_tools import protoc
import google.rpc.status_pb2 as status_pb2

std = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
googleapis = os.path.dirname(os.path.dirname(os.path.dirname(status_pb2.__file__)))
protos = sorted(glob.glob("protos/edgegrad/v1/*.proto"))
args = ["protoc", "-Iprotos", f"-I{std}", f"-I{googleapis}", "--python_out=.", "--pyi_out=.",
        "--grpc_python_out=.", *protos]
rc = protoc.main(args)
if rc:
    sys.exit(f"protoc failed ({rc})")
print("generated:", ", ".join(os.path.basename(p) for p in protos))
PYEOF
