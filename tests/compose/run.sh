#!/usr/bin/env bash
# The compose end-to-end test (tests/compose/test_compose.py), as CI runs it: make a Docker engine
# answer (or print why not and exit 0: skipped), pick base images (the official python:3.11-slim and
# redis:7.2-alpine where present or pullable, else a local Debian stand-in built with debootstrap),
# build the wheelhouse on the host for an offline image build, run the test, and stop what it started.
#   bash tests/compose/run.sh            (PYTHON=... for another interpreter than .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
start=$(date +%s)
pidfile=$(mktemp)
# a wheelhouse a developer filled for an offline build is theirs: only the one this script builds goes
had_wheels=$(ls wheelhouse/*.whl 2> /dev/null | head -n 1 || true)
cleanup() {
    if [ -z "$had_wheels" ]; then rm -f wheelhouse/*.whl; fi
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2> /dev/null && for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
        ip link delete docker0 2> /dev/null || true  # the bridge it made
        echo "compose test: stopped the dockerd it started (pid $pid)"
    fi
    rm -f "$pidfile"
}
trap cleanup EXIT

rc=0
bash tests/compose/engine.sh "$pidfile" || rc=$?
[ "$rc" = 3 ] && exit 0
[ "$rc" = 0 ] || exit "$rc"

have() { docker image inspect "$1" > /dev/null 2>&1 || timeout 120 docker pull -q "$1" > /dev/null 2>&1; }
if have python:3.11-slim && have redis:7.2-alpine; then
    base=python:3.11-slim; redis_image=redis:7.2-alpine
else
    base=edgegrad-local/debian-python:bookworm; redis_image=$base
    echo "compose test: python:3.11-slim / redis:7.2-alpine cannot be pulled here: using the local stand-in $base"
    if ! command -v debootstrap > /dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap > /dev/null 2>&1 || true
        fi
        command -v debootstrap > /dev/null || { echo "compose test: skipped: no base image and no debootstrap"; exit 0; }
    fi
    if ! docker image inspect "$base" > /dev/null 2>&1; then
        # no mirror answering is this machine's limit (say so, skip); a mirror that answers and a build that
        # fails is the test's failure
        mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
        if ! "$python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/dists/bookworm/Release', timeout=20)" "$mirror" 2> /dev/null; then
            echo "compose test: skipped: no base image can be pulled and the Debian mirror $mirror does not answer"; exit 0
        fi
    fi
    bash tests/compose/base-image.sh "$base"
fi

# Wheels resolved by a host Python of the image's exact version: markers such as
# python_full_version < "3.11.3" (redis -> async-timeout) differ between patch releases.
version='import sys; print("%d.%d.%d" % sys.version_info[:3])'
image_python=$(docker run --rm "$base" python3 -c "$version")
wheel_python=""
for candidate in "$python" /usr/bin/python3 python3 "python${image_python%.*}"; do
    if command -v "$candidate" > /dev/null && [ "$("$candidate" -c "$version" 2> /dev/null)" = "$image_python" ] \
        && "$candidate" -m pip --version > /dev/null 2>&1; then
        wheel_python=$candidate; break
    fi
done
if [ -n "$wheel_python" ]; then
    PYTHON=$wheel_python bash scripts/wheelhouse.sh
else
    echo "compose test: no host Python $image_python with pip (the image's): no wheelhouse, pip in the image uses its index"
fi

EDGEGRAD_COMPOSE_TEST=1 EDGEGRAD_BASE_IMAGE=$base EDGEGRAD_REDIS_IMAGE=$redis_image \
    "$python" -m pytest -s -p no:cacheprovider tests/compose
echo "compose test: wall time $(( $(date +%s) - start )) s (engine, base image, wheelhouse, build, test)"
