#!/usr/bin/env bash
# Set up a virtualenv, install edgegrad and compute the gradients of the example network.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/edgegrad grad examples/xor.json --inputs examples/xor-inputs.json --targets examples/xor-targets.json --loss mse
