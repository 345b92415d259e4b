#!/usr/bin/env bash
# Write constraints.txt: the exact versions of every package in .venv (what `.ci/run` installed and
# tested), edgegrad itself left out. Run it after trying newer versions and seeing CI green on them:
#   python3 -m venv /tmp/try && /tmp/try/bin/pip install torch==2.13.0 -e '.[test,torch,draw]'   # newest allowed
#   /tmp/try/bin/python -m pytest && VENV=/tmp/try bash scripts/constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
{
    echo "# The exact versions CI tested (scripts/constraints.sh writes this file from a tested venv)."
    echo "# Install the tested set with: pip install -c constraints.txt -e '.[test]' (pyproject.toml keeps the ranges)."
    # a local version label (torch's +cpu) is left out: ==X.Y.Z matches every build of X.Y.Z
    "$venv/bin/python" -m pip freeze --exclude-editable --all | grep -v -i '^edgegrad' | grep -v -i '^\(pip\|setuptools\|wheel\)==' \
        | sed 's/+[A-Za-z0-9.]*$//' | LC_ALL=C sort -f
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages from $venv"
