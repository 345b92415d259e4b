#!/usr/bin/env bash
# Fill wheelhouse/ with wheels of edgegrad's dependencies (pyproject.toml, at the versions CI tested:
# constraints.txt) and the build backend,
# for an offline, reproducible `docker build` (see wheelhouse/README.md).
#   PYTHON=python3.11 bash scripts/wheelhouse.sh
# PYTHON must be the image's Python version exactly (3.11.2 = 3.11.2: dependency markers such as
# python_full_version < "3.11.3" differ between patch releases) on the image's platform.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mapfile -t deps < <("$python" -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))")
rm -f wheelhouse/*.whl
"$python" -m pip wheel -q --wheel-dir wheelhouse -c constraints.txt "${deps[@]}" "setuptools>=70.1"
echo "wheelhouse: $(ls wheelhouse/*.whl | wc -l) wheels for Python $("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
